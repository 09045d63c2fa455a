"""The layering the code relies on: one module per outside library, and a pure core.

- `kubernetes` is imported only by collect/api.py, `paramiko` only by collect/ssh.py, so no client
  library's exception type can leak past its border (those modules translate them).
- The core (model, dataplane, objects, analyze, ranges, render) never imports collect/ or the CLI:
  parsing, mapping and diagnosis stay pure and testable without any network.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "kubectl_svcnet"
OWNERS = {"kubernetes": {"collect/api.py"}, "paramiko": {"collect/ssh.py"}, "urllib3": {"collect/api.py"}}
CORE = ("model.py", "objects.py", "analyze.py", "ranges.py", "render.py", "render_ranges.py", "dataplane/")


def imports(path: Path):
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield a.name
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module


SOURCES = sorted(p for p in PKG.rglob("*.py"))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PKG)))
def test_outside_libraries_have_one_owner(path):
    rel = str(path.relative_to(PKG))
    for name in imports(path):
        top = name.split(".")[0]
        if top in OWNERS:
            assert rel in OWNERS[top], f"{rel} imports {name}; only {sorted(OWNERS[top])} may"


@pytest.mark.parametrize("path", [p for p in SOURCES if str(p.relative_to(PKG)).startswith(CORE)],
                         ids=lambda p: str(p.relative_to(PKG)))  # fmt: skip
def test_core_is_pure(path):
    for name in imports(path):
        assert not name.startswith(("kubectl_svcnet.collect", "kubectl_svcnet.cli", "kubectl_svcnet.app")), (
            f"{path.relative_to(PKG)} imports {name}: the core must not reach the outside world"
        )
