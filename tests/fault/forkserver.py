"""A process that has imported the bridge once and forks a `fleet-bridge run` on
request, so that a kill loop can start a bridge in milliseconds, not a second.

    spawn <config> <log>   ->  <pid>
    reap <pid>             ->  <wait status>
"""

from __future__ import annotations

import os
import sys

import aiohttp  # noqa: F401  (imported before the fork: the point of this process)
import aiomqtt  # noqa: F401

import bridge.app
import bridge.cli
import bridge.config


def main() -> None:
    for line in sys.stdin:
        command, *args = line.split()
        if command == "spawn":
            config, log = args
            pid = os.fork()
            if pid == 0:
                fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
                os.dup2(fd, 1)
                os.dup2(fd, 2)
                code = 1
                try:
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
