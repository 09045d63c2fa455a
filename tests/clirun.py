"""Running the plugin in-process as `kubectl svcnet ARGS` runs it, for the CLI tests."""

from __future__ import annotations

import io
import sys
from typing import List

from kubectl_svcnet.cli import main


class Run:
    """A run's exit status, stdout and stderr."""

    def __init__(self, code: int, out: str, err: str) -> None:
        self.code, self.out, self.err = code, out, err

    def errors(self) -> List[str]:
        return [ln for ln in self.err.splitlines() if ln.startswith("error: ")]

    def hint(self) -> str:
        return next((ln for ln in self.err.splitlines() if ln.startswith("hint: ")), "")


def svcnet(capsys, *args: str, stdin: str = "") -> Run:
    """The plugin in-process (pytest's `capsys` takes its output), with `stdin` as its standard input."""
    capsys.readouterr()
    old = sys.stdin
    sys.stdin = io.StringIO(stdin)
    try:
        main(list(args))
        code = 0
    except SystemExit as e:
        code = int(e.code or 0)
    finally:
        sys.stdin = old
    out, err = capsys.readouterr()
    return Run(code, out, err)
