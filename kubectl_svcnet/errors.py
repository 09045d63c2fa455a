"""One error hierarchy. Every error knows its exit status and where it happened; cli.py prints it as
one line, ``error: <what> (<where>)``, and exits with that status."""

from __future__ import annotations

import enum
from typing import Optional


class ExitStatus(enum.IntEnum):
    """The exit status of a run. PARTIAL and INPUT both print what could be answered: PARTIAL when the
    cluster did not answer everything (a node unreachable, its commands failing, a source refused), INPUT
    when what the user gave cannot be read (a dump that is not one or is empty, a snapshot's node folder
    without dumps, a broken object file or kubeconfig)."""

    OK = 0
    ERROR = 1  # something failed; nothing useful could be answered
    USAGE = 2  # the command line is wrong
    PARTIAL = 3  # an answer was printed, but some nodes or sources did not answer
    INPUT = 4  # an input (dump, snapshot, kubeconfig) could not be read; what could be read is printed


class SvcnetError(Exception):
    """Base of every error the tool reports on purpose."""

    status = ExitStatus.ERROR

    def __init__(self, message: str, where: Optional[str] = None, hint: Optional[str] = None):
        super().__init__(message)
        self.message = message
        self.where = where
        self.hint = hint

    def one_line(self) -> str:
        text = self.message
        if self.where:
            text += f" ({self.where})"
        return text


class UsageError(SvcnetError):
    status = ExitStatus.USAGE


class InputError(SvcnetError):
    """A file or directory given on the command line cannot be read as what it should be."""

    status = ExitStatus.INPUT


class DumpParseError(InputError):
    """A dump is not what iptables-save / nft print. Carries the file (or node) and line."""

    def __init__(self, message: str, source: str = "", line: int = 0, hint: Optional[str] = None):
        where = f"{source}:{line}" if line else (source or None)
        super().__init__(message, where=where, hint=hint)
        self.source = source
        self.line = line


class NotFoundError(SvcnetError):
    """What the user asked for (a service, a node) is not there."""


class ApiError(SvcnetError):
    """The Kubernetes API refused or failed a request."""


class NodeAccessError(SvcnetError):
    """A node could not be reached or its commands failed."""
