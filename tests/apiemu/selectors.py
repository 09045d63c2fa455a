"""Label and field selectors as kube-apiserver parses them (the common subset).

Label selectors: ``k``, ``!k``, ``k=v``, ``k==v``, ``k!=v``, ``k in (a,b)``, ``k notin (a,b)``, joined
by commas (all must hold). Field selectors: ``path=v``, ``path==v``, ``path!=v`` on the fields each
resource supports (metadata.name, metadata.namespace, and a few per kind such as spec.nodeName).
"""

from __future__ import annotations

import re
from typing import Any, Callable, Dict, List, Optional, Tuple

Matcher = Callable[[Dict[str, Any]], bool]


class SelectorError(ValueError):
    pass


_KEY = r"[A-Za-z0-9](?:[-A-Za-z0-9_./]*[A-Za-z0-9])?"
_VAL = r"(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?)?"
_REQ = re.compile(
    rf"\s*(?:(?P<not>!)\s*(?P<nkey>{_KEY})"
    rf"|(?P<key>{_KEY})\s*(?:(?P<op>==|=|!=)\s*(?P<val>{_VAL})"
    rf"|\s+(?P<setop>in|notin)\s*\(\s*(?P<set>[^()]*)\)"
    rf")?)\s*(?:,|$)"
)


def _split_set(text: str) -> List[str]:
    vals = [v.strip() for v in text.split(",")]
    for v in vals:
        if not re.fullmatch(_VAL, v):
            raise SelectorError(f"invalid label value: {v!r}")
    return vals


def parse_label_selector(text: Optional[str]) -> Matcher:
    text = (text or "").strip()
    if not text:
        return lambda labels: True
    reqs: List[Tuple[str, str, List[str]]] = []
    pos = 0
    while pos < len(text):
        m = _REQ.match(text, pos)
        if not m or m.end() == pos:
            raise SelectorError(f"unable to parse requirement: {text[pos:]!r}")
        if m.group("not"):
            reqs.append((m.group("nkey"), "!", []))
        elif m.group("op"):
            reqs.append((m.group("key"), "!=" if m.group("op") == "!=" else "=", [m.group("val")]))
        elif m.group("setop"):
            reqs.append((m.group("key"), m.group("setop"), _split_set(m.group("set"))))
        else:
            reqs.append((m.group("key"), "exists", []))
        pos = m.end()

    def match(labels: Dict[str, Any]) -> bool:
        labels = labels or {}
        for key, op, vals in reqs:
            has = key in labels
            v = labels.get(key)
            if op == "exists" and not has:
                return False
            if op == "!" and has:
                return False
            if op == "=" and (not has or v != vals[0]):
                return False
            if op == "!=" and has and v == vals[0]:
                return False
            if op == "in" and (not has or v not in vals):
                return False
            if op == "notin" and has and v in vals:
                return False
        return True

    return match


# Fields each kind can be selected on (besides metadata.name / metadata.namespace).
FIELDS: Dict[str, Tuple[str, ...]] = {
    "Pod": ("spec.nodeName", "spec.restartPolicy", "spec.schedulerName", "spec.serviceAccountName",
            "spec.hostNetwork", "status.phase", "status.podIP", "status.nominatedNodeName"),
    "Node": ("spec.unschedulable",),
    "Service": ("spec.clusterIP", "spec.type"),
    "Namespace": ("status.phase",),
}  # fmt: skip


def _field(obj: Dict[str, Any], path: str) -> str:
    cur: Any = obj
    for part in path.split("."):
        cur = cur.get(part) if isinstance(cur, dict) else None
    if isinstance(cur, bool):
        return "true" if cur else "false"
    return "" if cur is None else str(cur)


def parse_field_selector(text: Optional[str], kind: str) -> Matcher:
    text = (text or "").strip()
    if not text:
        return lambda obj: True
    reqs: List[Tuple[str, bool, str]] = []
    allowed = ("metadata.name", "metadata.namespace") + FIELDS.get(kind, ())
    for part in text.split(","):
        m = re.fullmatch(r"\s*([A-Za-z.]+)\s*(==|=|!=)\s*(.*?)\s*", part)
        if not m:
            raise SelectorError(f"invalid selector: '{text}'; can't understand '{part}'")
        path, op, val = m.groups()
        if path not in allowed:
            raise SelectorError(f"field label not supported: {path}")
        reqs.append((path, op == "!=", val))

    def match(obj: Dict[str, Any]) -> bool:
        for path, negate, val in reqs:
            if (_field(obj, path) == val) == negate:
                return False
        return True

    return match
