"""Mutation testing of the core: bridge/quota.py, bridge/mqtt/publisher.py,
bridge/commander.py and bridge/webhooks.py, with mutmut (config: [tool.mutmut]
in pyproject.toml; the tests are tests/bridge, real Mosquitto included).

    .venv/bin/pip install 'mutmut==3.8.1'
    .venv/bin/python bench/mutation.py [--max-children N]

Not part of CI (it runs the covering tests once per mutant: tens of minutes on
two cores). Prints every surviving mutant, then per file and in all, and last
`killed=N survived=M score=X` (score: killed / (killed + survived); mutants that
time out count as killed, as mutmut counts them; "no tests" as survived).
Surviving mutants are killed by a test or listed as equivalent in
docs/reliability.md ("Mutation testing").
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KILLED = {"killed", "timeout", "segfault"}
SURVIVED = {"survived", "no tests"}


def mutmut() -> list[str]:
    found = shutil.which("mutmut", path=str(Path(sys.executable).parent)) or shutil.which("mutmut")
    if found is None:
        sys.exit("mutmut is not installed: .venv/bin/pip install 'mutmut==3.8.1'")
    return [found]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-children", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--no-run", action="store_true", help="only report the last run")
    args = parser.parse_args()
    if not args.no_run:
        run = subprocess.run(
            [*mutmut(), "run", "--max-children", str(args.max_children)], cwd=ROOT, check=False
        )
        if run.returncode not in (0, 1):
            print(f"mutmut run failed ({run.returncode})", file=sys.stderr)
    listing = subprocess.run(
        [*mutmut(), "results", "--all", "true"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    by_file: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    survivors = []
    for line in listing.splitlines():
        match = re.match(r"\s*([\w.]+?)__mutmut_(\d+):\s*(.+)$", line)
        if not match:
            continue
        name, status = match.group(1), match.group(3).strip()
        module = name.split(".x", 1)[0].split(".x_", 1)[0]
        by_file[module][status] += 1
        if status in SURVIVED:
            survivors.append(f"{name}__mutmut_{match.group(2)}: {status}")
    for survivor in survivors:
        print("survived", survivor)
    killed = survived = 0
    for module, counts in sorted(by_file.items()):
        k = sum(n for s, n in counts.items() if s in KILLED)
        m = sum(n for s, n in counts.items() if s in SURVIVED)
        killed, survived = killed + k, survived + m
        print(f"{module}: killed={k} survived={m} other={dict(counts)}")
    total = killed + survived
    print(f"killed={killed} survived={survived} score={killed / total if total else 0:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
