"""What a HACS install needs: brand images, a zip release, and a manifest whose
requirement is the version we publish (Home Assistant installs exactly that)."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import tomllib

from fleet_ha import REPO_ROOT

COMPONENT = REPO_ROOT / "custom_components" / "fleet_telematics"


def test_brand_images_are_square_pngs() -> None:
    # Home Assistant 2026.3 and later read brand/ from a custom integration.
    for name in ("icon.png", "logo.png"):
        data = (COMPONENT / "brand" / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n", name
        width, height = struct.unpack(">II", data[16:24])
        assert (width, height) == (256, 256), name


def test_manifest_requires_the_version_the_wheel_has() -> None:
    version = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["version"]
    manifest = json.loads((COMPONENT / "manifest.json").read_text())
    assert manifest["version"] == version
    assert manifest["requirements"] == [f"fleet-telematics-bridge=={version}"]
    hacs = json.loads((REPO_ROOT / "hacs.json").read_text())
    assert hacs["zip_release"] is True
    assert hacs["filename"] == "fleet_telematics.zip"


def test_the_release_check_refuses_a_tag_of_another_version() -> None:
    version = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["version"]
    check = [sys.executable, str(REPO_ROOT / "scripts" / "ha-release-check")]
    assert subprocess.run([*check, f"v{version}"], capture_output=True).returncode == 0
    wrong = subprocess.run([*check, "v99.0.0"], capture_output=True, text=True)
    assert wrong.returncode == 1
    assert "tag v99.0.0" in wrong.stderr
