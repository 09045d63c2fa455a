"""Property tests: on arbitrary or mutated input the readers raise nothing but their own error.

Whatever a user pipes in — a truncated dump, a dump with a line mangled, random bytes decoded as
text — the result is a NodeDataPlane (with findings) or a DumpParseError, never a traceback."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kubectl_svcnet.dataplane import read_node
from kubectl_svcnet.errors import DumpParseError
from tests.golden import fixture_dirs

DUMPS = sorted({p.read_text() for d in fixture_dirs() for p in d.glob("dump*.txt")})
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def read_or_parse_error(text: str) -> None:
    try:
        plane = read_node([(text, "fuzz.txt")], "n")
    except DumpParseError as e:
        assert e.one_line()  # says what and where
        return
    for s in plane.services:
        for fe in s.frontends:
            for r in fe.routes:
                assert r.verdict in ("forward", "reject", "drop")
                total = sum(b.probability for b in r.backends)
                assert total <= 1 + 1e-6
                if r.backends and total < 1 - 1e-6:
                    # Some connections reach no backend: never silently, always with a warning.
                    warned = [f for f in s.findings + plane.findings if f.severity in ("warning", "error")]
                    assert warned, (s.key, fe, r)


@SETTINGS
@given(st.text(max_size=2000))
def test_arbitrary_text(text):
    read_or_parse_error(text)


@SETTINGS
@given(st.sampled_from(DUMPS), st.data())
def test_truncated_dumps(dump, data):
    cut = data.draw(st.integers(min_value=0, max_value=len(dump)))
    read_or_parse_error(dump[:cut])


_TOKENS = [
    "-j", "-g", "!", "-m", "--probability", "--dport", '"', "--to-destination", "-A", ":", "*nat", "COMMIT",
    "{", "}", "goto", "vmap", "numgen", "0.5", "abc", "-s", "/", "::", "[", "]", "--comment", "\\", "²", "٣",
]  # fmt: skip


def mutate_lines(text: str, data, tokens) -> str:
    """1 to 4 edits of whole words (insert, delete, replace a token) or duplicated lines."""
    lines = text.split("\n")
    for _ in range(data.draw(st.integers(min_value=1, max_value=4))):
        i = data.draw(st.integers(min_value=0, max_value=len(lines) - 1))
        words = lines[i].split(" ")
        j = data.draw(st.integers(min_value=0, max_value=len(words)))
        op = data.draw(st.sampled_from(["insert", "delete", "replace", "dup"]))
        tok = data.draw(st.sampled_from(tokens) | st.text(max_size=8))
        if op == "insert":
            words.insert(j, tok)
        elif op == "delete" and words:
            words.pop(min(j, len(words) - 1))
        elif op == "replace" and words:
            words[min(j, len(words) - 1)] = tok
        else:
            lines.insert(i, lines[i])
        lines[i] = " ".join(words)
    return "\n".join(lines)


@SETTINGS
@given(st.sampled_from(DUMPS), st.data())
def test_mutated_lines(dump, data):
    read_or_parse_error(mutate_lines(dump, data, _TOKENS))
