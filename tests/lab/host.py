"""Where lab commands run.

`LocalHost` runs them on this machine with subprocess. The lab only talks to a host through this small
interface (`run`, `spawn`, `has`), so a multi-node lab can later drive each node over SSH with a
host class that builds the same argv lists into a remote command line.
"""

from __future__ import annotations

import shutil
import subprocess
from typing import Optional, Sequence


class CommandError(RuntimeError):
    def __init__(self, argv: Sequence[str], returncode: int, stdout: str, stderr: str):
        self.argv = list(argv)
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        super().__init__(f"command failed ({returncode}): {' '.join(argv)}\n{stderr.strip()}")


def netns_argv(argv: Sequence[str], netns: Optional[str]) -> list:
    """`ip netns exec NS argv...` (execs argv inside NS: the pid is argv's own pid)."""
    return ["ip", "netns", "exec", netns, *argv] if netns else list(argv)


class LocalHost:
    """Runs commands on the local machine (as the user running the tests, root for a lab)."""

    name = "local"

    def has(self, program: str) -> bool:
        return shutil.which(program) is not None

    def run(
        self,
        argv: Sequence[str],
        netns: Optional[str] = None,
        input: Optional[str] = None,  # noqa: A002 - mirrors subprocess.run
        check: bool = True,
        timeout: float = 60.0,
        cwd: Optional[str] = None,
    ) -> subprocess.CompletedProcess:
        full = netns_argv(argv, netns)
        proc = subprocess.run(
            full,
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=cwd,
            stdin=None if input is not None else subprocess.DEVNULL,
        )
        if check and proc.returncode != 0:
            raise CommandError(full, proc.returncode, proc.stdout, proc.stderr)
        return proc

    def spawn(self, argv: Sequence[str], netns: Optional[str] = None, cwd: Optional[str] = None) -> subprocess.Popen:
        """Start a long-running process (in its own session, so a terminal ^C reaches only pytest,
        whose cleanup then stops it)."""
        return subprocess.Popen(
            netns_argv(argv, netns),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=cwd,
            start_new_session=True,
        )
