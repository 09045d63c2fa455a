"""One interface for running a command on a node, whatever the transport.

    result = runner.run(["iptables-save"], timeout=60)   # -> Result(stdout, stderr, exit_code, command)

Modelled on pyinvoke's Runner/Result: a command is an argv list (never a shell string), a run gives a
`Result`, and a failed run (``check=True``, the default) raises `CommandFailed` carrying the command,
the exit code and the tail of stderr. Transports:

- `LocalRunner` — subprocess on this machine (tests, and a node that is the local machine);
- `kubectl_svcnet.collect.ssh.SSHRunner` — one node over SSH (paramiko);
- `kubectl_svcnet.collect.debugpod.PodRunner` — one node through a short-lived privileged pod (pods/exec).

Every error raised here is a `kubectl_svcnet.errors.NodeAccessError` whose `where` is the node's name.
With ``sudo=True`` a runner runs ``sudo -n -- <argv>`` and reports sudo asking for a password as one
clear error instead of hanging on a prompt.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import time
from dataclasses import dataclass
from typing import List, Optional, Sequence, Union

from kubectl_svcnet.errors import NodeAccessError

DEFAULT_TIMEOUT = 60.0
STDERR_TAIL = 300  # characters of stderr a failure message carries
NOT_FOUND = 127  # what a POSIX shell returns for a command it cannot find
SUDO = ("sudo", "-n", "--")

# What `sudo -n` prints when it would have to ask (sudo 1.8 - 1.9, several locales' English).
_SUDO_PASSWORD = ("a password is required", "a terminal is required", "no tty present", "askpass")
_SUDO_REFUSED = ("is not in the sudoers file", "is not allowed to execute", "may not run sudo")


@dataclass(frozen=True)
class Result:
    """What one command did. `stdout` is bytes (dumps can be large; decode once with `text`)."""

    stdout: Union[bytes, str]
    stderr: str
    exit_code: int
    command: str  # the argv as one shell-quoted line, for messages

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    @property
    def text(self) -> str:
        out = self.stdout
        return out if isinstance(out, str) else out.decode("utf-8", errors="replace")

    @property
    def not_found(self) -> bool:
        """The program does not exist on the node (exit 127, or a shell's "not found")."""
        return self.exit_code == NOT_FOUND

    def stderr_tail(self, limit: int = STDERR_TAIL) -> str:
        return tail(self.stderr, limit)


def tail(text: str, limit: int = STDERR_TAIL) -> str:
    """The last non-empty lines of `text` as one line, at most `limit` characters."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    one = " | ".join(lines[-3:])
    return one if len(one) <= limit else "…" + one[-(limit - 1) :]


def quote_argv(argv: Sequence[str]) -> str:
    """An argv as one POSIX shell line, every word quoted (what travels over SSH)."""
    return " ".join(shlex.quote(str(a)) for a in argv)


class CommandFailed(NodeAccessError):
    """A command ran and exited non-zero. Carries the Result."""

    def __init__(self, result: Result, where: Optional[str] = None):
        err = result.stderr_tail()
        msg = f"{result.command} exited {result.exit_code}" + (f": {err}" if err else "")
        super().__init__(msg, where=where)
        self.result = result
        self.command = result.command
        self.exit_code = result.exit_code


class CommandTimeout(NodeAccessError):
    """A command did not finish within its timeout (it was stopped)."""

    def __init__(self, command: str, timeout: float, where: Optional[str] = None):
        super().__init__(f"timed out after {timeout:g}s running {command}", where=where)
        self.command = command
        self.timeout = timeout


class SudoError(NodeAccessError):
    """sudo wanted a password, refused the user, or is not installed."""


def check_sudo(result: Result, node: str, user: Optional[str] = None) -> None:
    """Turn what `sudo -n` prints when it cannot run the command into one clear error."""
    if result.exit_code == 0:
        return
    err = result.stderr.lower()
    who = f"user {user}" if user else "the user"
    if "sudo" in err and any(s in err for s in _SUDO_PASSWORD):
        raise SudoError(f"sudo needs a password on {node} (use a user with passwordless sudo or root)", where=node)
    if "sudo" in err and any(s in err for s in _SUDO_REFUSED):
        raise SudoError(f"sudo refused {who} on {node}: {result.stderr_tail()}", where=node)
    if result.exit_code == NOT_FOUND and "sudo" in err and "not found" in err:
        raise SudoError(f"sudo is not installed on {node} (connect as root instead)", where=node)


class Runner:
    """Runs argv lists on one node. Subclasses implement `_run`; `run` adds sudo and checking."""

    remote = False  # True when output crosses a network (then large dumps are worth compressing)

    def __init__(self, name: str, sudo: bool = False, timeout: float = DEFAULT_TIMEOUT):
        self.name = name
        self.sudo = sudo
        self.timeout = timeout
        self.user: Optional[str] = None

    def run(
        self,
        argv: Sequence[str],
        timeout: Optional[float] = None,
        check: bool = True,
        sudo: Optional[bool] = None,
    ) -> Result:
        """Run `argv` (a list of words, never a shell string). `timeout` bounds the whole run."""
        if isinstance(argv, (str, bytes)):
            raise TypeError("argv must be a sequence of words, not a string")
        words = [str(a) for a in argv]
        if not words:
            raise ValueError("empty argv")
        use_sudo = self.sudo if sudo is None else sudo
        full = [*SUDO, *words] if use_sudo else words
        result = self._run(full, self.timeout if timeout is None else timeout)
        if use_sudo:
            check_sudo(result, self.name, self.user)
        if check and result.exit_code != 0:
            raise CommandFailed(result, where=self.name)
        return result

    def _run(self, argv: List[str], timeout: float) -> Result:  # pragma: no cover - abstract
        raise NotImplementedError

    def close(self) -> None:
        """Release the connection (if any). Idempotent."""

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


class LocalRunner(Runner):
    """Runs commands on this machine with subprocess (no shell). `prefix` is prepended to every argv
    (e.g. ``["ip", "netns", "exec", NS]`` in tests)."""

    def __init__(
        self,
        name: str = "localhost",
        sudo: bool = False,
        timeout: float = DEFAULT_TIMEOUT,
        prefix: Sequence[str] = (),
        env: Optional[dict] = None,
    ):
        super().__init__(name, sudo=sudo, timeout=timeout)
        self.prefix = list(prefix)
        self.env = env

    def _run(self, argv: List[str], timeout: float) -> Result:
        full = [*self.prefix, *argv]
        command = quote_argv(argv)
        try:
            proc = subprocess.Popen(
                full,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,  # its own process group: a timeout stops its children too
                env=self.env,
            )
        except FileNotFoundError:
            return Result(b"", f"{full[0]}: not found", NOT_FOUND, command)
        except PermissionError as e:
            return Result(b"", f"{full[0]}: {e.strerror}", 126, command)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            raise CommandTimeout(command, timeout, where=self.name) from None
        except BaseException:
            _kill_group(proc)
            raise
        code = proc.returncode
        if code < 0:  # killed by a signal: report it the way a shell does
            code = 128 - code
        return Result(out, err.decode("utf-8", errors="replace"), code, command)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    deadline = time.monotonic() + 5
    try:
        proc.communicate(timeout=max(0.1, deadline - time.monotonic()))
    except (subprocess.TimeoutExpired, OSError, ValueError):
        pass  # it was SIGKILLed: nothing more to read or wait for; the caller reports the original error
