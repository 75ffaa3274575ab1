"""A process that has imported the bridge once and forks a `fleet-bridge run` on
request, so that a kill loop can start a bridge in milliseconds, not a second.

    spawn <config> <log>                  ->  <pid>
    spawn-virtual <config> <log> <clock>  ->  <pid>  (on a clock the test moves,
                                                      tests/fault/virtual_time.py)
    reap <pid>                            ->  <wait status>
"""

from __future__ import annotations

import os
import sys

import aiohttp  # noqa: F401  (imported before the fork: the point of this process)
import aiomqtt  # noqa: F401

import bridge.app
import bridge.cli
import bridge.config
from tests.fault import virtual_time


def main() -> None:
    for line in sys.stdin:
        command, *args = line.split()
        if command in ("spawn", "spawn-virtual"):
            config, log, *clock = args
            pid = os.fork()
            if pid == 0:
                fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
                os.dup2(fd, 1)
                os.dup2(fd, 2)
                code = 1
                try:
                    if clock:
                        code = virtual_time.run_child(config, clock[0])
                    else:
                        code = bridge.cli.main(["run", "--config", config])
                finally:
                    sys.stdout.flush()
                    sys.stderr.flush()
                    os._exit(code)
            print(pid, flush=True)
        elif command == "reap":
            _, status = os.waitpid(int(args[0]), 0)
            print(status, flush=True)


if __name__ == "__main__":
    main()
