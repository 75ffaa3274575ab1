"""The core the Home Assistant integration imports stays free of the daemon's
dependencies: Home Assistant pins its own pydantic and paho-mqtt, and the
integration must live beside whatever versions a user's Home Assistant has."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DAEMON_ONLY = ("pydantic", "paho", "aiomqtt", "apscheduler", "yaml", "amqtt", "sqlite3")


def integration_imports() -> set[str]:
    """Every `bridge` module that custom_components/ imports."""
    modules = set()
    for path in (ROOT / "custom_components").rglob("*.py"):
        for match in re.finditer(r"^\s*from (bridge[\w.]*) import", path.read_text(), re.M):
            modules.add(match.group(1))
    return modules


def test_the_integration_imports_only_the_core() -> None:
    modules = integration_imports()
    assert "bridge.quota" in modules  # the scan found the integration's imports
    script = (
        "import sys\n"
        f"for name in {sorted(modules)!r}:\n"
        "    __import__(name)\n"
        f"loaded = sorted({{m.split('.')[0] for m in sys.modules}} & set({DAEMON_ONLY!r}))\n"
        "print(','.join(loaded))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "", f"the core pulled in: {result.stdout.strip()}"
