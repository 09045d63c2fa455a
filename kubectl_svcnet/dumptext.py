"""A dump file's text, kept as the bytes read until something needs all of it as a str.

`trace` of one Service over a 48 MB iptables-save dump reads a few dozen lines of it
(iptables.parse_iptables_for): decoding the whole file first cost as much as the rest of the
search. Files that are all ASCII (every kube-proxy dump) are kept as bytes, which are UTF-8 as they
are; the first use that needs the whole text decodes it once and lets the bytes go.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Tuple


class DumpBytes:
    """ASCII bytes standing in for their text. Slices (format detection reads a dump's head) decode only
    what they cover; `str(d)` is the whole text, and any other str method or `in` is asked of it."""

    __slots__ = ("data", "_text")

    def __init__(self, data: bytes):
        self.data: Optional[bytes] = data  # None once decoded
        self._text: Optional[str] = None

    def __str__(self) -> str:
        if self._text is None:
            self._text = str(self.data, "ascii")
            self.data = None  # (one copy of a big dump, not two)
        return self._text

    def __getitem__(self, key: Any) -> str:
        if self.data is not None:
            return str(self.data[key], "ascii") if isinstance(key, slice) else chr(self.data[key])
        return str(self)[key]

    def __len__(self) -> int:
        return len(self.data) if self.data is not None else len(str(self))

    def __bool__(self) -> bool:
        return len(self) > 0

    def __contains__(self, sub: str) -> bool:
        return sub in str(self)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):  # (not a str method: copy/pickle probing, or a slot not set yet)
            raise AttributeError(name)
        return getattr(str(self), name)

    def __repr__(self) -> str:
        return f"DumpBytes({len(self)} bytes)"


def text_of(text: Any) -> str:
    """The text of a dump as read (a str, or DumpBytes decoded now)."""
    return text if isinstance(text, str) else str(text)


def searched(text: Any) -> Tuple[Any, Callable[[str], Any], Callable[[Any], str]]:
    """What a search of a dump runs on: its bytes while it is DumpBytes, else its text; with a function
    making a str needle of that kind, and one making a str of a piece of it."""
    if isinstance(text, DumpBytes) and text.data is not None:
        return text.data, _utf8, _ascii
    return text_of(text), _same, _same


def _same(s: Any) -> Any:
    return s


def _utf8(s: str) -> bytes:
    return s.encode("utf-8")


def _ascii(b: bytes) -> str:
    return str(b, "ascii")


def find_by(buf: Any, needle: Any, k: int, start: int) -> int:
    """buf.find(needle, start), looking for needle[k] alone: a character rare in dumps ("*", "#") is found
    at memchr speed, several times faster than the search for the whole needle. Where it turns out not
    to be rare, the whole needle is searched for from there on."""
    c, find, startswith = needle[k : k + 1], buf.find, buf.startswith
    j = find(c, start + k)
    misses = 0
    while j >= 0:
        if startswith(needle, j - k):
            return j - k
        misses += 1
        if misses > 64:
            return find(needle, j - k + 1)
        j = find(c, j + 1)
    return -1
