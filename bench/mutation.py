"""Mutation testing of the core: bridge/quota.py, bridge/mqtt/publisher.py,
bridge/commander.py and bridge/webhooks.py, with mutmut (config: [tool.mutmut]
in pyproject.toml; the tests are tests/bridge, real Mosquitto included).

    .venv/bin/pip install 'mutmut==3.8.1'
    .venv/bin/python bench/mutation.py --file bridge/commander.py [--max-children N]
    .venv/bin/python bench/mutation.py [--max-children N]     # all four, tests/bridge

Not part of CI (it runs the covering tests once per mutant). `--file` mutates
one file against the in-process suites written for it (FOCUS below: minutes,
not hours, on two cores), in a copy of the checkout of its own under
$TMPDIR/fleet-bridge-mutation/<name>, so that `mutants/` and the narrowed
config never touch the working tree; `mutmut show <mutant>` there shows a
diff. Prints every surviving mutant, then per file and in all, and last
`killed=N survived=M score=X` (score: killed / (killed + survived); mutants that
time out count as killed, as mutmut counts them; "no tests" as survived).
Surviving mutants are killed by a test or listed as equivalent in
docs/mutants-quota-publisher.md and docs/mutants-webhooks-commander.md.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KILLED = {"killed", "timeout", "segfault"}
SURVIVED = {"survived", "no tests"}
# The suites that exercise each file in one process (the Mosquitto suites cover
# the same code end to end, at seconds a test: too slow to run once per mutant).
FOCUS = {
    "bridge/quota.py": [
        "tests/bridge/test_quota.py",
        "tests/bridge/test_quota_scopes.py",
        "tests/bridge/test_quota_bridge.py",
        "tests/bridge/test_mutants_quota.py",
    ],
    "bridge/mqtt/publisher.py": [
        "tests/bridge/test_mutants_publisher.py",
        "tests/bridge/test_publisher_diff.py::test_the_publisher_sends_a_state_only_when_it_differs",
    ],
    "bridge/commander.py": ["tests/bridge/test_mutants_commander.py"],
    "bridge/webhooks.py": [
        "tests/bridge/test_webhooks.py",
        "tests/bridge/test_mutants_webhooks.py",
    ],
}


def copy_dir(file: str) -> Path:
    return Path(os.environ.get("TMPDIR", "/tmp")) / "fleet-bridge-mutation" / Path(file).stem


def focused_copy(file: str) -> Path:
    """A copy of the tracked files whose [tool.mutmut] mutates `file` alone,
    against its FOCUS suites (an earlier copy's mutants/ is started afresh)."""
    target = copy_dir(file)
    if target.exists():
        shutil.rmtree(target)
    tracked = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.decode()
    for name in filter(None, tracked.split("\0")):
        source = ROOT / name
        if source.is_file():  # a file deleted but not yet committed is skipped
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    config = target / "pyproject.toml"
    text = config.read_text()
    text = re.sub(r"only_mutate = \[.*?\]", f"only_mutate = {json.dumps([file])}", text, flags=re.S)
    text = re.sub(
        r"pytest_add_cli_args_test_selection = \[.*?\]",
        f"pytest_add_cli_args_test_selection = {json.dumps(FOCUS[file])}",
        text,
        flags=re.S,
    )
    config.write_text(text)
    return target


def mutmut() -> list[str]:
    found = shutil.which("mutmut", path=str(Path(sys.executable).parent)) or shutil.which("mutmut")
    if found is None:
        sys.exit("mutmut is not installed: .venv/bin/pip install 'mutmut==3.8.1'")
    return [found]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-children", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--no-run", action="store_true", help="only report the last run")
    parser.add_argument("--file", choices=sorted(FOCUS), help="one file, its focused suites")
    args = parser.parse_args()
    where = ROOT
    if args.file is not None:
        where = copy_dir(args.file) if args.no_run else focused_copy(args.file)
        print(f"mutating {args.file} in {where}", flush=True)
    if not args.no_run:
        run = subprocess.run(
            [*mutmut(), "run", "--max-children", str(args.max_children)], cwd=where, check=False
        )
        if run.returncode not in (0, 1):
            print(f"mutmut run failed ({run.returncode})", file=sys.stderr)
    listing = subprocess.run(
        [*mutmut(), "results", "--all", "true"],
        cwd=where,
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
