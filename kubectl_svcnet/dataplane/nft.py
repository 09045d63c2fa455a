"""kube-proxy's nftables mode: parse ``nft list ruleset`` (text or ``nft -j`` JSON), resolve Services.

Two steps. `parse_nft` turns a dump into an `NftRuleset` (tables, chains with their rules, sets and maps
with their elements), keeping the position of everything so a trace can point at it. `resolve_nft`
walks kube-proxy's tables (``table ip kube-proxy`` and ``table ip6 kube-proxy``; every other table is
ignored) and builds the model's `NodeDataPlane`.

How the resolver reads kube-proxy (pkg/proxy/nftables/proxier.go, v1.29 to current):

- Frontends come from the dispatch maps: ``service-ips`` (ip . proto . port) and ``service-nodeports``
  (proto . port), plus ``no-endpoint-services`` / ``no-endpoint-nodeports`` for service ports without
  (usable) endpoints. Routes come from FOLLOWING the verdicts (goto/jump, inline ``numgen`` vmaps, down
  to ``dnat``/``reject``/``drop``); names are only used to say which Service a chain belongs to.
- Every chain is evaluated for three classes of new connections: from a pod (matches the local traffic
  detector, ``ip saddr 10.0.0.0/8`` or ``iifname ...``), from the node itself (``fib saddr type local``)
  and from outside. Pod and node together are the "cluster" source; if all three agree the route is
  "any", else "cluster" and "external".
- Traffic that falls off the end of a chain without DNAT (an ``external-`` chain of an
  externalTrafficPolicy=Local service without local endpoints) meets the filter-hook check of
  ``no-endpoint-services`` / ``no-endpoint-nodeports`` for the same key: that element's verdict
  (``drop`` or ``goto reject-chain``) is the route's verdict.
- ``numgen random mod N vmap { 0 : goto a, ... }``: each listed index gets 1/N of new connections.
  ``ip saddr @affinity-X goto endpoint-Y`` rules give the route an `Affinity` whose timeout is set X's
  ``timeout``.
- ``firewall-ips`` (loadBalancerSourceRanges): ``ip saddr != { A, B } drop`` in the firewall chain makes
  one route per allowed range (what an external client from that range gets), then "other" dropped.
- Frontend types: ClusterIP when the IP is in the ``cluster-ips`` set or its ``service-ips`` target is a
  ``service-``/``local-`` chain. An IP whose target is an ``external-`` chain is an external IP or a
  load-balancer IP, which nft mode writes identically. The rule used: LoadBalancer if the same
  ip . proto . port is in ``firewall-ips``; else LoadBalancer if the service port also has a node port
  (LoadBalancer Services allocate one by default) and the IP is globally routable; else ExternalIP.
  This is a guess (the API objects settle it); it matches kube-proxy's own test conventions.
- An IP that only appears in ``no-endpoint-services`` is a ClusterIP if it is in ``cluster-ips`` (older
  kube-proxy has no such set: then a service port's only such IP is its ClusterIP).

Positions: ``Hop.line`` is the 1-based line in a text dump. JSON dumps (``nft -j``) are one line, so
there ``Hop.line`` is the rule's handle (what ``nft -a list ruleset`` prints as ``# handle N``), and a
map element's hop uses its map's handle.
"""

from __future__ import annotations

import ipaddress
import json
import re
import sys
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Set, Tuple

from kubectl_svcnet.dataplane.routes import cidr_contains
from kubectl_svcnet.errors import DumpParseError
from kubectl_svcnet.model import (
    CLUSTER_IP,
    DROP,
    ERROR,
    EXTERNAL_IP,
    FORWARD,
    FROM_ANY,
    FROM_CLUSTER,
    FROM_EXTERNAL,
    FROM_OTHER,
    FRONTEND_ORDER,
    INFO,
    LOAD_BALANCER,
    NODE_PORT,
    REJECT,
    WARNING,
    Affinity,
    Backend,
    Finding,
    Frontend,
    Hop,
    NodeDataPlane,
    NodeInfo,
    Route,
    ServiceKey,
    ServiceRules,
    frozen,
)

KUBE_PROXY_TABLE = "kube-proxy"
SERVICE_IPS = "service-ips"
SERVICE_NODEPORTS = "service-nodeports"
NO_ENDPOINT_SERVICES = "no-endpoint-services"
NO_ENDPOINT_NODEPORTS = "no-endpoint-nodeports"
FIREWALL_IPS = "firewall-ips"
CLUSTER_IPS = "cluster-ips"
NODEPORT_IPS = "nodeport-ips"
SERVICE_CHAIN_PREFIXES = ("service-", "local-", "external-", "endpoint-", "firewall-")

# ---------------------------------------------------------------------------------------------
# The parsed ruleset.


@frozen  # (slots: 220,000 of them at 10,000 services)
class NftRule:
    chain: str
    line: int  # text: 1-based line in the dump; JSON: the rule's handle
    text: str  # as nft prints it, comment included
    handle: Optional[int] = None


@dataclass
class NftChain:
    name: str
    line: int
    rules: List[NftRule] = field(default_factory=list)
    type: Optional[str] = None
    hook: Optional[str] = None
    priority: Optional[str] = None


@dataclass
class NftElement:
    key: Tuple[str, ...]  # the key's parts (split at " . ")
    verdict: Optional[str]  # a map's value ("goto x", "drop"); None in a set
    comment: Optional[str]
    line: int
    text: str


@dataclass
class NftSet:
    name: str
    kind: str  # "set" | "map"
    line: int
    flags: Tuple[str, ...] = ()
    timeout_seconds: Optional[int] = None
    elements: List[NftElement] = field(default_factory=list)


@dataclass
class NftTable:
    family: str
    name: str
    line: int
    chains: Dict[str, NftChain] = field(default_factory=dict)
    sets: Dict[str, NftSet] = field(default_factory=dict)


@dataclass
class NftRuleset:
    source: str
    format: str  # "text" | "json"
    tables: List[NftTable] = field(default_factory=list)

    def kube_proxy_tables(self) -> List[NftTable]:
        return [t for t in self.tables if t.name == KUBE_PROXY_TABLE and t.family in ("ip", "ip6", "inet")]


# ---------------------------------------------------------------------------------------------
# Sniffing.


def _first_meaningful_line(text: str, limit: int = 50) -> str:
    for n, raw in enumerate(text.splitlines()):
        if n >= limit:
            break
        line = raw.strip()
        if line and not line.startswith("#"):
            return line
    return ""


def looks_like_nft_text(text: str) -> bool:
    """True if the text starts like ``nft list ruleset`` output (``table <family> <name> {``)."""
    words = _strip_handle(_first_meaningful_line(text[:20000])).split()
    return len(words) == 4 and words[0] == "table" and words[3] == "{"


def looks_like_nft_json(text: str) -> bool:
    """True if the text starts like ``nft -j list ruleset`` output (``{"nftables": [...``)."""
    head = text[:2000].lstrip()
    return head.startswith("{") and '"nftables"' in head[:200]


# ---------------------------------------------------------------------------------------------
# Text parsing. One pass over the lines; each line is scanned a constant number of times.


def _brace_delta(line: str) -> Optional[int]:
    """Net count of ``{`` minus ``}`` outside double quotes; None if a quote is left open."""
    if '"' not in line:
        return line.count("{") - line.count("}")
    depth = 0
    quoted = False
    for ch in line:
        if ch == '"':
            quoted = not quoted
        elif not quoted:
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
    return None if quoted else depth


def _strip_handle(line: str) -> str:
    """Drop the `` # handle N`` that ``nft -a`` appends."""
    at = line.rfind("# handle ")
    if at >= 0 and line[at + 9 :].strip().isdecimal() and line[:at].count('"') % 2 == 0:
        return line[:at].rstrip()
    return line


def _handle_of(line: str) -> Optional[int]:
    at = line.rfind("# handle ")
    if at >= 0:
        rest = line[at + 9 :].strip()
        if rest.isdecimal():
            return int(rest)
    return None


def _tokens(text: str) -> List[str]:
    """Split on blanks, keeping double-quoted strings whole and splitting off trailing commas."""
    out: List[str] = []
    cur: List[str] = []
    quoted = False
    if '"' not in text:
        out = text.split()
        text = ""
    for ch in text:
        if ch == '"':
            quoted = not quoted
            cur.append(ch)
        elif not quoted and ch in " \t":
            if cur:
                out.append("".join(cur))
                cur = []
        else:
            cur.append(ch)
    if cur:
        out.append("".join(cur))
    result: List[str] = []
    for tok in out:
        if len(tok) > 1 and tok.endswith(",") and not tok.startswith('"'):
            result.append(tok[:-1])
            result.append(",")
        else:
            result.append(tok)
    return result


def _unquote(s: str) -> str:
    return s[1:-1] if len(s) >= 2 and s[0] == '"' and s[-1] == '"' else s


def parse_duration(text: str) -> Optional[int]:
    """nft durations (``3h``, ``1d2h3m4s``, ``10800s``, ``500ms``) in whole seconds."""
    text = text.strip()
    if not text:
        return None
    if text.isdecimal():
        return int(text)
    units = {"d": 86400, "h": 3600, "m": 60, "s": 1}
    total = 0.0
    num = ""
    i = 0
    while i < len(text):
        ch = text[i]
        if ch.isdecimal():
            num += ch
        elif text.startswith("ms", i) and num:
            total += int(num) / 1000.0
            num = ""
            i += 1
        elif ch in units and num:
            total += int(num) * units[ch]
            num = ""
        else:
            return None
        i += 1
    if num:
        return None
    return int(total)


def _split_elements(chunks: List[Tuple[int, str]]) -> List[Tuple[int, str]]:
    """Split an ``elements = { ... }`` body (without the outer braces) at top-level commas."""
    out: List[Tuple[int, str]] = []
    cur: List[str] = []
    start = 0
    depth = 0
    quoted = False
    for lineno, chunk in chunks:
        if not quoted and depth == 0 and '"' not in chunk and "{" not in chunk and "}" not in chunk:
            # fast path: plain elements, split at commas
            for k, piece in enumerate(chunk.split(",")):
                if k > 0:
                    text = "".join(cur).strip()
                    if text:
                        out.append((start, text))
                    cur = []
                piece = piece.strip()
                if piece:
                    if not cur:
                        start = lineno
                    cur.append(piece + " ")
            continue
        for ch in chunk:
            if ch == '"':
                quoted = not quoted
            elif not quoted:
                if ch == "{":
                    depth += 1
                elif ch == "}":
                    depth -= 1
                elif ch == "," and depth == 0:
                    text = "".join(cur).strip()
                    if text:
                        out.append((start, text))
                    cur = []
                    start = 0
                    continue
            if not cur and ch in " \t":
                continue
            if not cur:
                start = lineno
            cur.append(ch)
        if cur and not quoted:
            cur.append(" ")
    text = "".join(cur).strip()
    if text:
        out.append((start, text))
    return out


_ELEMENT_OPTIONS = ("comment", "timeout", "expires", "counter", "packets", "bytes")


def _parse_element(line: int, text: str, is_map: bool) -> NftElement:
    key_text, verdict = text, None
    if is_map:
        # The value follows the last " : " outside quotes (IPv6 keys have bare colons, not " : ").
        quoted = False
        cut = -1
        for i, ch in enumerate(text):
            if ch == '"':
                quoted = not quoted
            elif not quoted and ch == ":" and text[i - 1 : i] == " " and text[i + 1 : i + 2] == " ":
                cut = i
        if cut >= 0:
            key_text, verdict = text[:cut].strip(), text[cut + 1 :].strip()
    toks = _tokens(key_text)
    comment = None
    key_toks: List[str] = []
    i = 0
    while i < len(toks):
        tok = toks[i]
        if tok in _ELEMENT_OPTIONS:
            if tok == "comment" and i + 1 < len(toks):
                comment = _unquote(toks[i + 1])
            i += 2
            continue
        key_toks.append(tok)
        i += 1
    key = tuple(p.strip() for p in " ".join(key_toks).split(" . "))
    return NftElement(key=key, verdict=verdict, comment=comment, line=line, text=text)


def _parse_chain_header(chain: NftChain, line: str) -> None:
    # "type filter hook prerouting priority dstnat - 10; policy accept;"
    for part in line.split(";"):
        words = part.split()
        if not words:
            continue
        if words[0] == "type" and len(words) >= 2:
            chain.type = words[1]
            if "hook" in words:
                at = words.index("hook")
                chain.hook = words[at + 1] if at + 1 < len(words) else None
            if "priority" in words:
                at = words.index("priority")
                chain.priority = " ".join(words[at + 1 :])


class _Frame:
    __slots__ = ("kind", "name", "line", "obj")

    def __init__(self, kind: str, name: str, line: int, obj: Any) -> None:
        self.kind = kind
        self.name = name
        self.line = line
        self.obj = obj


_CHAIN_WORDS = ("type", "policy", "devices", "comment")  # what a chain's body holds besides rules


def _parse_text(text: str, source: str) -> NftRuleset:
    ruleset = NftRuleset(source=source, format="text")
    stack: List[_Frame] = []
    elements: Optional[List[Tuple[int, str]]] = None
    elements_depth = 0
    elements_line = 0
    last_line = 0
    for lineno, raw in enumerate(text.split("\n"), 1):
        if "#" in raw:
            handle = _handle_of(raw)
            line = _strip_handle(raw.strip())
        else:  # (most lines: no handle to look for)
            handle = None
            line = raw.strip()
        if not line:
            continue
        last_line = lineno
        if line == "}" and elements is None:  # (a block's end: a third of a big table's lines)
            if not stack:
                raise DumpParseError("'}' without an open block", source=source, line=lineno)
            stack.pop()
            continue
        if '"' in line:
            delta = _brace_delta(line)
            if delta is None:
                raise DumpParseError("unterminated quoted string (truncated dump?)", source=source, line=lineno)
        else:
            delta = line.count("{") - line.count("}")
        if elements is not None:
            elements_depth += delta
            if elements_depth < 0:
                raise DumpParseError("unbalanced '}' in set elements", source=source, line=lineno)
            if elements_depth == 0:
                body = line[: line.rfind("}")]
                elements.append((lineno, body))
                _finish_elements(stack[-1].obj, elements)
                elements = None
            else:
                elements.append((lineno, line))
            continue
        if line[0] == "#":
            continue
        top = stack[-1] if stack else None
        if line == "}":
            if top is None:
                raise DumpParseError("'}' without an open block", source=source, line=lineno)
            stack.pop()
            continue
        if top is not None and top.kind == "chain":
            if delta != 0:
                raise DumpParseError(
                    f"unbalanced braces in a rule of chain {top.name} (truncated dump?)", source=source, line=lineno
                )
            chain = top.obj
            if line.startswith(_CHAIN_WORDS):  # (else a rule: no need to split it)
                first = line.split(None, 1)[0]
                if first == "type" and "hook" in line.split():
                    _parse_chain_header(chain, line)
                    continue
                if first == "policy" or first == "devices":
                    continue
                if first == "comment" and " " in line and line.endswith('"') and line.count('"') == 2:
                    continue
            chain.rules.append(NftRule(chain.name, lineno, line, handle))
            continue
        words = line.split()
        if top is None:
            if len(words) == 4 and words[0] == "table" and words[3] == "{":
                table = NftTable(family=words[1], name=_unquote(words[2]), line=lineno)
                ruleset.tables.append(table)
                stack.append(_Frame("table", table.name, lineno, table))
                continue
            if len(words) == 3 and words[0] == "table" and words[2] == "{":  # "table NAME {" = family ip
                table = NftTable(family="ip", name=_unquote(words[1]), line=lineno)
                ruleset.tables.append(table)
                stack.append(_Frame("table", table.name, lineno, table))
                continue
            raise DumpParseError(
                "not `nft list ruleset` output: expected 'table <family> <name> {'", source=source, line=lineno
            )
        if top.kind == "table":
            if delta == 1 and words[-1] == "{" and len(words) >= 3:
                kind, name = words[0], sys.intern(_unquote(words[-2]))  # (interned: rules name it again)
                table = top.obj
                if kind == "chain":
                    chain = NftChain(name=name, line=lineno)
                    table.chains[name] = chain
                    stack.append(_Frame("chain", name, lineno, chain))
                elif kind in ("set", "map"):
                    nset = NftSet(name=name, kind=kind, line=lineno)
                    table.sets[name] = nset
                    stack.append(_Frame(kind, name, lineno, nset))
                else:  # flowtable, counter, quota, ct helper, limit, ...: kept as an opaque block
                    stack.append(_Frame("other", name, lineno, None))
                continue
            if delta != 0:
                raise DumpParseError("unbalanced braces in table body", source=source, line=lineno)
            continue  # table-level properties: comment, flags
        if top.kind in ("set", "map"):
            nset = top.obj
            if words[0] == "elements" and len(words) >= 3 and words[1] == "=" and words[2].startswith("{"):
                body = line[line.index("{", line.index("=")) + 1 :]
                depth = delta
                if depth == 0:
                    _finish_elements(nset, [(lineno, body[: body.rfind("}")])])
                elif depth > 0:
                    elements, elements_depth, elements_line = [(lineno, body)], depth, lineno
                else:
                    raise DumpParseError("unbalanced braces in set elements", source=source, line=lineno)
                continue
            if delta != 0:
                raise DumpParseError(f"unbalanced braces in {top.kind} {top.name}", source=source, line=lineno)
            if words[0] == "flags":
                nset.flags = tuple(f.strip() for f in " ".join(words[1:]).split(",") if f.strip())
            elif words[0] == "timeout" and len(words) >= 2:
                nset.timeout_seconds = parse_duration(words[1])
            continue
        # opaque block: only keep track of nesting
        if delta > 0:
            stack.append(_Frame("other", words[0], lineno, None))
        elif delta < 0:
            raise DumpParseError("unbalanced braces", source=source, line=lineno)
    if elements is not None:
        raise DumpParseError(
            f"truncated dump: elements of {stack[-1].kind} {stack[-1].name} (line {elements_line}) never end",
            source=source,
            line=last_line,
        )
    if stack:
        frame = stack[-1]
        raise DumpParseError(
            f"truncated dump: {frame.kind} {frame.name} opened at line {frame.line} is never closed",
            source=source,
            line=last_line,
        )
    return ruleset


def _finish_elements(nset: NftSet, chunks: List[Tuple[int, str]]) -> None:
    for line, text in _split_elements(chunks):
        nset.elements.append(_parse_element(line, text, nset.kind == "map"))


# ---------------------------------------------------------------------------------------------
# JSON parsing: objects become the same NftRuleset; rule expressions are written back as nft text.


def _hex(value: Any) -> str:
    return f"0x{value:08x}" if isinstance(value, int) else _jexpr(value)


def _jexpr(e: Any) -> str:  # noqa: C901 - one small case per nft JSON expression
    if isinstance(e, bool):
        return str(e).lower()
    if isinstance(e, (int, float)):
        return str(e)
    if isinstance(e, str):
        return e
    if isinstance(e, list):
        return ",".join(_jexpr(x) for x in e)
    if not isinstance(e, dict) or len(e) != 1:
        return "?"
    ((key, v),) = e.items()
    if key == "payload" and isinstance(v, dict):
        if "protocol" in v:
            return f"{v.get('protocol')} {v.get('field')}"
        return "@payload"
    if key == "meta" and isinstance(v, dict):
        mkey = v.get("key")
        bare = ("iif", "oif", "iifname", "oifname", "iiftype", "oiftype")
        return str(mkey) if mkey in bare else f"meta {mkey}"
    if key == "ct" and isinstance(v, dict):
        return f"ct {v.get('key')}"
    if key == "fib" and isinstance(v, dict):
        flags = v.get("flags") or []
        flags = [flags] if isinstance(flags, str) else flags
        return f"fib {' . '.join(str(f) for f in flags)} {v.get('result')}"
    if key == "concat" and isinstance(v, list):
        return " . ".join(_jexpr(x) for x in v)
    if key == "prefix" and isinstance(v, dict):
        return f"{_jexpr(v.get('addr'))}/{v.get('len')}"
    if key == "range" and isinstance(v, list) and len(v) == 2:
        return f"{_jexpr(v[0])}-{_jexpr(v[1])}"
    if key == "set":
        if isinstance(v, list):
            items = []
            for item in v:
                if isinstance(item, list) and len(item) == 2:
                    items.append(f"{_jexpr(item[0])} : {_jverdict(item[1])}")
                else:
                    items.append(_jexpr(item))
            return "{ " + ", ".join(items) + " }"
        return _jexpr(v)
    if key == "elem" and isinstance(v, dict):
        return _jexpr(v.get("val"))
    if key == "numgen" and isinstance(v, dict):
        text = f"numgen {v.get('mode', 'random')} mod {v.get('mod')}"
        if v.get("offset"):
            text += f" offset {v.get('offset')}"
        return text
    if key in ("&", "|", "^", "<<", ">>") and isinstance(v, list) and len(v) == 2:
        return f"{_jexpr(v[0])} {key} {_hex(v[1])}"
    return "?"


def _jverdict(v: Any) -> str:
    if isinstance(v, dict) and len(v) == 1:
        ((key, body),) = v.items()
        if key in ("jump", "goto") and isinstance(body, dict):
            return f"{key} {body.get('target')}"
        if key in ("accept", "drop", "continue", "return"):
            return key
    return _jexpr(v)


def _jstatement(s: Any) -> str:  # noqa: C901 - one small case per nft JSON statement
    if not isinstance(s, dict) or len(s) != 1:
        return "?"
    ((key, v),) = s.items()
    if key == "match" and isinstance(v, dict):
        left, right, op = v.get("left"), v.get("right"), v.get("op", "==")
        binop = isinstance(left, dict) and any(k in left for k in ("&", "|", "^"))
        rtext = _hex(right) if binop else _jexpr(right)
        if op in ("==", "in") and not binop:
            return f"{_jexpr(left)} {rtext}"
        return f"{_jexpr(left)} {op} {rtext}"
    if key in ("jump", "goto", "accept", "drop", "continue", "return"):
        return _jverdict(s)
    if key == "reject":
        if not isinstance(v, dict):
            return "reject"
        rtype, rexpr = v.get("type"), v.get("expr")
        if rexpr in (None, "port-unreachable") and rtype in (None, "icmp", "icmpv6", "icmpx"):
            return "reject"
        if rtype == "tcp reset":
            return "reject with tcp reset"
        return f"reject with {rtype} {rexpr}"
    if key == "vmap" and isinstance(v, dict):
        return f"{_jexpr(v.get('key'))} vmap {_jexpr(v.get('data'))}"
    if key in ("dnat", "snat") and isinstance(v, dict):
        addr = _jexpr(v.get("addr")) if v.get("addr") is not None else ""
        port = v.get("port")
        family = v.get("family")
        target = addr
        if port is not None:
            target = f"[{addr}]:{port}" if ":" in addr else f"{addr}:{_jexpr(port)}"
        fam = f" {family}" if family else ""
        return f"{key}{fam} to {target}"
    if key == "masquerade":
        flags = v.get("flags") if isinstance(v, dict) else None
        if flags:
            flags = [flags] if isinstance(flags, str) else flags
            return "masquerade " + ",".join(str(f) for f in flags)
        return "masquerade"
    if key == "mangle" and isinstance(v, dict):
        return f"{_jexpr(v.get('key'))} set {_jexpr(v.get('value'))}"
    if key == "set" and isinstance(v, dict):
        return f"{v.get('op')} {v.get('set')} {{ {_jexpr(v.get('elem'))} }}"
    if key == "counter":
        if isinstance(v, dict) and "packets" in v:
            return f"counter packets {v.get('packets')} bytes {v.get('bytes')}"
        return "counter"
    if key in ("log", "notrack", "limit", "xt", "queue", "quota", "meter", "flow"):
        return key
    return f"?{key}"


_JSON_START = re.compile(r'\s*\{\s*"nftables"\s*:\s*\[\s*')
_JSON_GAP = re.compile(r"\s*")


class _NotStreamable(Exception):
    """The document is not `{"nftables": [...]}` and nothing else, read item by item."""


def _json_items(text: str) -> Any:
    """The items of `nft -j list ruleset`'s top-level "nftables" list, decoded one at a time: a 10,000-
    service table is one 91 MB line, and decoding it whole holds ~600 MB of objects at once. Raises
    _NotStreamable (or a decoding error) where the document is anything else; then it is read whole."""
    m = _JSON_START.match(text)
    if m is None:
        raise _NotStreamable()
    decode = json.JSONDecoder().raw_decode
    gap = _JSON_GAP.match
    i = m.end()
    if text.startswith("]", i):
        i += 1
    else:
        while True:
            obj, i = decode(text, i)
            yield obj
            i = gap(text, i).end()
            if text.startswith(",", i):
                i = gap(text, i + 1).end()
                continue
            if text.startswith("]", i):
                i += 1
                break
            raise _NotStreamable()
    i = gap(text, i).end()
    if not text.startswith("}", i) or text[i + 1 :].strip():
        raise _NotStreamable()


def _parse_json(text: str, source: str) -> NftRuleset:
    try:
        return _json_ruleset(_json_items(text), source)
    except (_NotStreamable, json.JSONDecodeError, RecursionError):
        # Not the plain shape, or malformed: read whole, which says what is wrong where.
        return _parse_json_whole(text, source)


def _parse_json_whole(text: str, source: str) -> NftRuleset:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DumpParseError(f"malformed JSON: {exc.msg}", source=source, line=exc.lineno) from None
    except RecursionError:
        raise DumpParseError("malformed JSON: nested too deeply", source=source, line=1) from None
    if not isinstance(doc, dict) or not isinstance(doc.get("nftables"), list):
        raise DumpParseError('not `nft -j list ruleset` output: no top-level "nftables" list', source=source, line=1)
    return _json_ruleset(doc["nftables"], source)


def _json_ruleset(items: Any, source: str) -> NftRuleset:
    ruleset = NftRuleset(source=source, format="json")
    tables: Dict[Tuple[str, str], NftTable] = {}
    for index, obj in enumerate(items):
        where = f"nftables[{index}]"
        if not isinstance(obj, dict) or len(obj) != 1:
            raise DumpParseError(f"{where}: expected an object with one key", source=source, line=1)
        ((kind, body),) = obj.items()
        if kind == "metainfo":
            continue
        if not isinstance(body, dict):
            raise DumpParseError(f"{where}: {kind} is not an object", source=source, line=1)
        family = str(body.get("family", ""))
        handle = body.get("handle") if isinstance(body.get("handle"), int) else index
        if kind == "table":
            table = NftTable(family=family, name=str(body.get("name", "")), line=handle)
            tables[(family, table.name)] = table
            ruleset.tables.append(table)
            continue
        if kind not in ("chain", "set", "map", "rule"):
            continue  # flowtables, counters, elements of other objects: not used
        table = tables.get((family, str(body.get("table", ""))))
        if table is None:
            raise DumpParseError(
                f"{where}: {kind} of undeclared table {family} {body.get('table')}", source=source, line=1
            )
        if kind == "chain":
            name = str(body.get("name", ""))
            prio = body.get("prio")
            table.chains[name] = NftChain(
                name=name,
                line=handle,
                type=body.get("type"),
                hook=body.get("hook"),
                priority=None if prio is None else str(prio),
            )
        elif kind in ("set", "map"):
            name = str(body.get("name", ""))
            flags = body.get("flags") or ()
            flags = (flags,) if isinstance(flags, str) else tuple(str(f) for f in flags)
            timeout = body.get("timeout")
            nset = NftSet(
                name=name,
                kind=kind,
                line=handle,
                flags=flags,
                timeout_seconds=int(timeout) if isinstance(timeout, (int, float)) else None,
            )
            for elem in body.get("elem") or ():
                nset.elements.append(_json_element(elem, kind == "map", handle))
            table.sets[name] = nset
        else:
            chain_name = str(body.get("chain", ""))
            chain = table.chains.get(chain_name)
            if chain is None:
                raise DumpParseError(f"{where}: rule in undeclared chain {chain_name}", source=source, line=1)
            exprs = body.get("expr")
            if not isinstance(exprs, list):
                raise DumpParseError(f"{where}: rule without an expr list", source=source, line=1)
            rtext = " ".join(_jstatement(x) for x in exprs)
            if body.get("comment"):
                rtext += f' comment "{body.get("comment")}"'
            chain.rules.append(NftRule(chain=chain_name, line=handle, text=rtext, handle=handle))
    return ruleset


def _json_element(elem: Any, is_map: bool, line: int) -> NftElement:
    key_expr, value = (elem[0], elem[1]) if is_map and isinstance(elem, list) and len(elem) == 2 else (elem, None)
    comment = None
    if isinstance(key_expr, dict) and isinstance(key_expr.get("elem"), dict):
        comment = key_expr["elem"].get("comment")
        key_expr = key_expr["elem"].get("val")
    if isinstance(key_expr, dict) and isinstance(key_expr.get("concat"), list):
        key = tuple(_jexpr(x) for x in key_expr["concat"])
    else:
        key = (_jexpr(key_expr),)
    verdict = _jverdict(value) if value is not None else None
    text = " . ".join(key)
    if comment:
        text += f' comment "{comment}"'
    if verdict is not None:
        text += f" : {verdict}"
    return NftElement(key=key, verdict=verdict, comment=comment, line=line, text=text)


def parse_nft(text: str, source: str) -> NftRuleset:
    """Parse ``nft list ruleset`` text or ``nft -j list ruleset`` JSON. Raises DumpParseError only."""
    if not isinstance(text, str):
        raise DumpParseError("dump is not text", source=source)
    stripped = text.lstrip()
    if not stripped:
        raise DumpParseError("empty dump: no nftables ruleset", source=source, line=1)
    try:
        if stripped.startswith("{") or stripped.startswith("["):
            return _parse_json(text, source)
        return _parse_text(text, source)
    except DumpParseError:
        raise
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, RecursionError) as exc:  # defensive
        raise DumpParseError(f"cannot parse nftables dump: {exc}", source=source) from None


# ---------------------------------------------------------------------------------------------
# Rule analysis: what a rule matches and what it does.

_SELECTOR_2 = {"ip", "ip6", "th", "tcp", "udp", "sctp", "ct", "meta", "udplite", "icmp", "icmpv6", "ether"}
_SELECTOR_1 = {"iifname", "oifname", "iif", "oif", "mark", "iiftype", "oiftype"}
_OPS = {"==", "!=", "<", ">", "<=", ">="}
_BINOPS = {"&", "|", "^", "and", "or", "xor"}


@frozen
class _Cond:
    selector: str
    negated: bool
    value: str


@frozen
class _Action:
    kind: str  # goto jump drop reject accept return vmap numgen dnat masq update mark none
    target: Optional[str] = None  # chain (goto/jump), map (vmap), set (update)
    mod: int = 0
    entries: Tuple[Tuple[str, str], ...] = ()  # inline vmap: (key, verdict)
    dnat: Optional[Tuple[str, Optional[int]]] = None


@frozen
class _Analysed:
    conds: List[_Cond]
    action: _Action
    unknown: Optional[str]  # the token that could not be read
    comment: Optional[str] = None


def _read_braced(toks: List[str], i: int) -> Tuple[List[str], int]:
    """toks[i] == "{": returns the tokens inside and the index after the matching "}"."""
    depth = 0
    inner: List[str] = []
    j = i
    while j < len(toks):
        t = toks[j]
        if t == "{":
            depth += 1
            if depth > 1:
                inner.append(t)
        elif t == "}":
            depth -= 1
            if depth == 0:
                return inner, j + 1
            inner.append(t)
        else:
            inner.append(t)
        j += 1
    return inner, j


def _set_values(value: str) -> List[str]:
    v = value.strip()
    if v.startswith("{") and v.endswith("}"):
        v = v[1:-1]
    return [p.strip() for p in v.split(",") if p.strip()]


# kube-proxy's most common rule shapes, read in one match: conditions `SELECTOR FIELD [!=] VALUE`, then
# `jump X`, `goto X`, `dnat to X` or `numgen random mod N vmap { 0 : goto A, ... }`, then an optional
# comment. A 10,000-service table holds 220,000 rules, nearly all of these shapes. Anything else (and any
# value the general reader would take for a keyword) goes to the general reader below, which gives the
# same result (tests/test_nft.py checks both ways agree on every fixture rule and on mutations).
_FAST_RULE = re.compile(
    r"((?:(?:ip|ip6|meta|th|tcp|udp|sctp) [a-z0-9]+ (?:!= )?[0-9A-Za-z][0-9A-Za-z.:/_-]* )*)"
    r"(?:(jump|goto) ([^\s\",{}]+)|dnat to ([^\s\",{}]+)|numgen random mod (\d+) vmap \{ ([^{}\"]*) \})"
    r'(?: comment "([^"]*)")?\Z'
)
_FAST_COND = re.compile(r"(\S+ \S+) (!= )?(\S+) ")
_FAST_ENTRY = re.compile(r"\d+ : (?:goto|jump) [^\s\",{}]+\Z")
_NOT_VALUES = frozenset({"set", "vmap"}) | _OPS | _BINOPS


def _fast_parts(text: str) -> Optional[tuple]:
    """A common-shape rule's pieces (see _FAST_RULE), checked as the general reader would take them:
    (conditions as (selector, "!= " or "", value), verb, target, dnat target, mod, vmap entries,
    comment); None for anything else."""
    m = _FAST_RULE.match(text)
    if m is None:
        return None
    conds_text, verb, target, dnat_to, mod, entries_text, comment = m.groups()
    conds = _FAST_COND.findall(conds_text) if conds_text else ()
    for _sel, _neg, value in conds:
        if value in _NOT_VALUES:
            return None
    entries = None
    if entries_text is not None:
        entries = entries_text.split(", ")
        if not all(_FAST_ENTRY.match(p) for p in entries):
            return None
    return conds, verb, target, dnat_to, mod, entries, comment


def _analyse_fast(text: str) -> Optional[_Analysed]:
    """analyse_rule for the common shapes (see _FAST_RULE); None for anything else."""
    parts = _fast_parts(text)
    if parts is None:
        return None
    conds, verb, target, dnat_to, mod, entries, comment = parts
    if verb is not None:
        action = _Action(verb, target=target)
    elif dnat_to is not None:
        action = _Action("dnat", dnat=_parse_dnat(dnat_to))
    else:
        action = _Action(
            "numgen", mod=int(mod), entries=tuple((k, v) for k, _, v in (p.partition(" : ") for p in entries))
        )
    return _Analysed([_Cond(sel, bool(neg), value) for sel, neg, value in conds], action, None, comment)


def _teaches_detector(chain: str, text: str) -> bool:
    """Whether _Resolver._learn_detector could learn from this rule: it reads only service-, local- and
    external- chains' conditions on the source (saddr, iifname), which the text then names."""
    return chain.startswith(("service-", "local-", "external-")) and ("saddr" in text or "iifname" in text)


def _fast_leads(parts: tuple) -> Tuple[str, List[str]]:
    """What a common-shape rule (_fast_parts) does to chains, as its analysis would say: the action's
    kind and the chains it jumps or goes to (_targets)."""
    verb, target, entries = parts[1], parts[2], parts[5]
    if verb is not None:
        return verb, [target]
    if entries is not None:
        return "numgen", [p.rpartition(" ")[2] for p in entries]
    return "dnat", []


def analyse_rule(text: str) -> _Analysed:
    """What a rule tests and does (the general reader, after the fast path for common shapes)."""
    return _analyse_fast(text) or _analyse_general(text)


def _analyse_general(text: str) -> _Analysed:  # noqa: C901 - a small recursive-descent reader
    toks = _tokens(text)
    comment = None
    if len(toks) >= 2 and toks[-2] == "comment" and toks[-1].startswith('"'):
        comment = _unquote(toks[-1])
        toks = toks[:-2]
    conds: List[_Cond] = []
    action = _Action("none")
    n = len(toks)
    i = 0
    mod = 0

    def unknown(at: int) -> _Analysed:
        return _Analysed(conds, action, toks[at] if at < n else "<end>", comment)

    while i < n:
        t = toks[i]
        if action.kind not in ("none", "mark", "update", "masq") and t != "comment":
            return unknown(i)
        if t in ("jump", "goto"):
            if i + 1 >= n:
                return unknown(i)
            action = _Action(t, target=_unquote(toks[i + 1]))
            i += 2
        elif t in ("drop", "accept", "return", "continue"):
            action = _Action(t)
            i += 1
        elif t == "reject":
            action = _Action("reject")
            i = n
        elif t == "counter":
            i += 1
            while i + 1 < n and toks[i] in ("packets", "bytes"):
                i += 2
        elif t in ("log", "notrack"):
            i = n if t == "log" else i + 1
        elif t == "numgen":
            if (
                i + 3 >= n
                or toks[i + 1] not in ("random", "inc")
                or toks[i + 2] != "mod"
                or not toks[i + 3].isdecimal()
            ):
                return unknown(i)
            mod = int(toks[i + 3])
            i += 4
            if i + 1 < n and toks[i] == "offset":
                i += 2
            if i >= n or toks[i] != "vmap":
                return unknown(i)
        elif t == "vmap":
            if i + 1 >= n:
                return unknown(i)
            if toks[i + 1].startswith("@"):
                action = _Action("vmap", target=toks[i + 1][1:])
                i += 2
            elif toks[i + 1] == "{":
                inner, i = _read_braced(toks, i + 1)
                entries = []
                for part in " ".join(inner).split(" , "):
                    part = part.strip().rstrip(",").strip()
                    if not part:
                        continue
                    if " : " not in part:
                        return unknown(i - 1)
                    k, _, verdict = part.partition(" : ")
                    entries.append((k.strip(), verdict.strip()))
                action = _Action("numgen" if mod else "vmap-inline", mod=mod, entries=tuple(entries))
            else:
                return unknown(i + 1)
        elif t in ("dnat", "snat"):
            j = i + 1
            if j < n and toks[j] in ("ip", "ip6"):
                j += 1
            if j + 1 >= n or toks[j] != "to":
                return unknown(j)
            action = _Action(t, dnat=_parse_dnat(toks[j + 1]))
            i = j + 2
            while i < n and toks[i] in ("fully-random", "persistent", "random", ","):
                i += 1
        elif t in ("masquerade", "redirect"):
            action = _Action("masq")
            i = n
        elif t in ("update", "add") and i + 1 < n and toks[i + 1].startswith("@"):
            target = toks[i + 1][1:]
            if i + 2 < n and toks[i + 2] == "{":
                _, i = _read_braced(toks, i + 2)
            else:
                i += 2
            action = _Action("update", target=target)
        elif t in _SELECTOR_2 or t in _SELECTOR_1 or t == "fib":
            # selector [. selector ...]
            parts: List[str] = []
            while True:
                if i >= n:
                    return unknown(i)
                t = toks[i]
                if t == "fib":
                    j = i + 1
                    sel = ["fib"]
                    while j < n and toks[j] in ("saddr", "daddr", "mark", "iif", "oif", "."):
                        sel.append(toks[j])
                        j += 1
                    if j >= n or toks[j] not in ("type", "oif", "oifname", "addrtype"):
                        return unknown(j)
                    sel.append(toks[j])
                    parts.append(" ".join(sel))
                    i = j + 1
                elif t in _SELECTOR_2:
                    if i + 1 >= n:
                        return unknown(i)
                    parts.append(f"{t} {toks[i + 1]}")
                    i += 2
                elif t in _SELECTOR_1:
                    parts.append(t)
                    i += 1
                else:
                    return unknown(i)
                if i < n and toks[i] == ".":
                    i += 1
                    continue
                break
            selector = " . ".join(parts)
            if i < n and toks[i] == "set":
                action = _Action("mark")
                i = n
                continue
            if i < n and toks[i] == "vmap":
                continue
            negated = False
            if i < n and toks[i] in _BINOPS:  # meta mark & 0x4000 == 0
                if i + 1 >= n:
                    return unknown(i)
                selector += f" {toks[i]} {toks[i + 1]}"
                i += 2
            if i < n and toks[i] in _OPS:
                negated = toks[i] == "!="
                i += 1
            if i >= n:
                return unknown(i)
            if toks[i] == "{":
                inner, i = _read_braced(toks, i)
                value = "{ " + " ".join(inner).replace(" ,", ",") + " }"
            else:
                value = toks[i]
                i += 1
            conds.append(_Cond(selector, negated, _unquote(value)))
        else:
            return unknown(i)
    return _Analysed(conds, action, None, comment)


def _parse_dnat(target: str) -> Optional[Tuple[str, Optional[int]]]:
    target = target.strip()
    if target.startswith("["):
        end = target.find("]")
        if end < 0:
            return None
        ip = target[1:end]
        rest = target[end + 1 :]
        port = int(rest[1:]) if rest.startswith(":") and rest[1:].isdecimal() else None
        return ip, port
    if target.count(":") == 1:
        ip, _, port = target.partition(":")
        return ip, int(port) if port.isdecimal() else None
    return target, None


# ---------------------------------------------------------------------------------------------
# Resolution.

_CLASSES = ("pod", "node", "external")


@frozen  # (slots: a 10,000-service map makes a million of these)
class _Out:
    kind: str  # forward | drop | reject | fall
    weight: float
    hops: Tuple[Hop, ...] = ()
    backend: Optional[Tuple[str, int]] = None
    affinity: Optional[int] = None
    local: Optional[bool] = None

    def scaled(self, factor: float, prefix: Tuple[Hop, ...] = (), affinity: Optional[int] = None) -> _Out:
        return _Out(
            self.kind,
            self.weight * factor,
            prefix + self.hops,
            self.backend,
            self.affinity if self.affinity is not None else affinity,
            self.local,
        )


def parse_service_chain_name(name: str) -> Optional[Tuple[str, str, str, str]]:
    """``service-ULMVA6XW-ns1/svc1/tcp/p80`` (or endpoint-/external-/local-/firewall-/affinity-)
    -> (namespace, name, protocol, port name). Unnamed ports end in ``/tcp/``."""
    prefix, sep, rest = name.partition("-")
    if not sep or prefix not in ("service", "local", "external", "endpoint", "firewall", "affinity"):
        return None
    _hash, sep, base = rest.partition("-")
    if not sep:
        return None
    base = base.split("__", 1)[0]
    parts = base.split("/")
    if len(parts) != 4 or not parts[0] or not parts[1] or not parts[2]:
        return None
    return parts[0], parts[1], parts[2], parts[3]


def _key_from_comment(comment: Optional[str], protocol: str) -> Optional[ServiceKey]:
    if not comment or "/" not in comment:
        return None
    ns, _, rest = comment.partition("/")
    name, _, port = rest.partition(":")
    if not ns or not name:
        return None
    return ServiceKey(ns, name, port, protocol.upper())


def _is_global(ip: str) -> bool:
    try:
        return ipaddress.ip_address(ip).is_global
    except ValueError:
        return False


class _Resolver:
    def __init__(
        self,
        table: NftTable,
        node: str,
        findings: Dict[Tuple[str, str], Tuple[Finding, Optional[str]]],
        paths: bool = True,
    ):
        self.table = table
        # Hops are kept for a trace of one Service, which prints them; a map of every Service prints none
        # (at 10,000 services they would be most of what it holds).
        self.paths = paths
        self.node = node
        self.findings = findings
        self.analysed: Dict[Tuple[str, int], _Analysed] = {}
        self.memo: Dict[Tuple[str, str], List[_Out]] = {}
        self.visiting: Set[Tuple[str, str]] = set()
        self.detector_values: Set[str] = set()
        self.detector_cidrs: List[str] = []
        self.dispatch: Optional[Dict[str, Tuple[Hop, ...]]] = None
        self.mark_chains: Dict[str, bool] = {}
        self.depends = False  # set while evaluating when a rule looked at the packet's source
        self.label = "" if table.family == "ip" else f"{table.family} "

    # -- findings ------------------------------------------------------------------------------
    def finding(self, severity: str, code: str, message: str, service: Optional[str] = None) -> None:
        message = f"{self.label}{message}" if self.label else message
        self.findings.setdefault((code, message), (Finding(severity, code, message, self.node), service))

    def rule(self, chain: str, index: int) -> _Analysed:
        key = (chain, index)
        got = self.analysed.get(key)
        if got is None:
            got = analyse_rule(self.table.chains[chain].rules[index].text)
            self.analysed[key] = got
        return got

    # -- pre-passes ----------------------------------------------------------------------------
    def check_rules(self, only: Optional[str] = None) -> None:
        """Every rule once: unknown shapes, undefined chains and sets; learn the local-traffic detector.
        ``only`` ("ns/name", a trace): another Service's chains are read for the detector alone (their
        problems would not be shown), which on a 10,000-service node is a few rules in a hundred."""
        chains = self.table.chains
        self.own_chains: List[str] = []  # with ``only``: that Service's chains
        # Without ``only``: each chain's jumps and gotos, and the maps its vmap rules look up, for
        # reachability (which then reads no rule again). Names interned: most are mark-for-masquerade.
        self.leads: Dict[str, Tuple[str, ...]] = {}
        self.vmaps: Dict[str, List[str]] = {}
        for cname, chain in chains.items():
            service = _service_of(cname)
            if only is not None and service is not None:
                if service == only:
                    self.own_chains.append(cname)
                else:
                    for idx, rule in enumerate(chain.rules):
                        if _teaches_detector(cname, rule.text):
                            self._learn_detector(cname, self.rule(cname, idx))
                    continue
            jumps: List[str] = []
            for idx, rule in enumerate(chain.rules):
                parts = _fast_parts(rule.text)
                if parts is not None:
                    # A common shape: no unknown part, no set (its values hold no "@"); only what it
                    # jumps to is checked, without building its analysis (read again when walked).
                    kind, targets = _fast_leads(parts)
                    jumps += targets
                    for target in targets:
                        if target not in chains:
                            self.finding(
                                ERROR,
                                "undefined-chain",
                                f"line {rule.line}: chain {cname}: {kind} to undefined chain {target}",
                                service,
                            )
                    if _teaches_detector(cname, rule.text):
                        self._learn_detector(cname, self.rule(cname, idx))
                    continue
                a = self.rule(cname, idx)
                jumps += _targets(a)
                if a.action.kind == "vmap" and a.action.target:
                    self.vmaps.setdefault(cname, []).append(a.action.target)
                if a.unknown is not None:
                    self.finding(
                        WARNING,
                        "unknown-rule",
                        f"line {rule.line}: chain {cname}: unrecognized rule ({a.unknown!r}): {rule.text}",
                        service,
                    )
                for target in _targets(a):
                    if target not in chains:
                        self.finding(
                            ERROR,
                            "undefined-chain",
                            f"line {rule.line}: chain {cname}: {a.action.kind} to undefined chain {target}",
                            service,
                        )
                for ref in _set_refs(a):
                    if ref not in self.table.sets:
                        self.finding(
                            ERROR,
                            "undefined-set",
                            f"line {rule.line}: chain {cname}: reference to undefined set/map @{ref}",
                            service,
                        )
                self._learn_detector(cname, a)
            if only is None:
                self.leads[cname] = tuple(map(sys.intern, jumps))
        for nset in self.table.sets.values():
            for elem in nset.elements:
                target = _verdict_target(elem.verdict)
                if target and target not in chains:
                    self.finding(
                        ERROR,
                        "undefined-chain",
                        f"line {elem.line}: map {nset.name}: element {elem.text} points to undefined chain {target}",
                    )

    def _learn_detector(self, cname: str, a: _Analysed) -> None:
        saddr = [c for c in a.conds if c.selector in ("ip saddr", "ip6 saddr", "iifname", "meta iifname")]
        if len(saddr) != 1:
            return
        cond = saddr[0]
        if cond.value.startswith("@") or cond.value.startswith("{"):
            return
        if cname.startswith("external-") and not cond.negated and a.action.kind == "goto":
            target = a.action.target or ""
            if target.startswith("service-") or target.startswith("local-"):
                self._add_detector(cond)
        elif cname.startswith(("service-", "local-")) and cond.negated and a.action.target == "mark-for-masquerade":
            self._add_detector(cond)

    def _add_detector(self, cond: _Cond) -> None:
        if cond.value not in self.detector_values:
            self.detector_values.add(cond.value)
            if cond.selector.endswith("saddr"):
                self.detector_cidrs.append(cond.value)

    def reachability(self, only: Optional[str] = None) -> None:
        """Chains of kube-proxy's that nothing reaches from a hook (through rules and dispatch maps) are
        stale. ``only`` (after check_rules(only)): just that Service's chains are judged, and only the
        chains and maps that lead to them are followed (see _ancestors)."""
        chains = self.table.chains
        within = None if only is None else self._ancestors(only)
        seen: Set[str] = set()
        todo = [name for name, c in chains.items() if c.hook]
        while todo:
            name = todo.pop()
            if name in seen or name not in chains or (within is not None and name not in within):
                continue
            seen.add(name)
            if within is None:  # (check_rules noted where every chain leads)
                todo += self.leads[name]
                for m in self.vmaps.get(name, ()):
                    if m in self.table.sets:
                        todo += filter(None, (_verdict_target(e.verdict) for e in self.table.sets[m].elements))
                continue
            for idx in range(len(chains[name].rules)):
                a = self.rule(name, idx)
                todo.extend(_targets(a))
                if a.action.kind == "vmap" and a.action.target in self.table.sets:
                    if within is not None and "@" + a.action.target not in within:
                        continue
                    for elem in self.table.sets[a.action.target].elements:
                        target = _verdict_target(elem.verdict)
                        if target:
                            todo.append(target)
        if not any(c.hook for c in chains.values()):
            self.finding(WARNING, "no-base-chains", f"table {self.table.name} has no base (hook) chains")
        for name, chain in chains.items() if only is None else ((n, chains[n]) for n in self.own_chains):
            if name in seen or not name.startswith(SERVICE_CHAIN_PREFIXES):
                continue
            if chain.rules:
                self.finding(
                    WARNING,
                    "unreachable-chain",
                    f"line {chain.line}: chain {name} is not reached from any hook or map (stale rules?)",
                    _service_of(name),
                )
            else:
                self.finding(
                    INFO,
                    "unreachable-chain",
                    f"line {chain.line}: empty chain {name} is not reached (a flushed stale chain)",
                    _service_of(name),
                )

    def _ancestors(self, only: str) -> Set[str]:
        """Every chain, and every map (as "@name"), from which a path of rules and map elements leads to
        one of ``only``'s chains, those included: a path from a hook to them goes through nothing else.
        Found backwards, one level at a time: a rule can only lead to a chain or map its text names
        (kube-proxy's chain names hold "-ns/name/"), and an element only to the chain its verdict names.
        The same edges as the walk from the hooks; on a 10,000-service node a few passes over the texts
        instead of reading every rule."""
        chains, sets = self.table.chains, self.table.sets
        found: Set[str] = set(self.own_chains)
        frontier: Set[str] = set(found)
        # What a text that leads to the frontier must hold: first the Service's marker, then the names.
        names = re.compile(re.escape(f"-{only}/"))
        while frontier:
            nxt: Set[str] = set()
            search = names.search
            for cname, chain in chains.items():
                if cname in found:
                    continue
                for idx, rule in enumerate(chain.rules):
                    if search(rule.text) is None:
                        continue
                    a = self.rule(cname, idx)
                    leads = set(_targets(a))
                    if a.action.kind == "vmap" and a.action.target:
                        leads.add("@" + a.action.target)
                    if leads & frontier:
                        nxt.add(cname)
                        break
            for sname, nset in sets.items():
                key = "@" + sname
                if key in found:
                    continue
                for elem in nset.elements:
                    if elem.verdict and search(elem.verdict) is not None:
                        if _verdict_target(elem.verdict) in frontier:
                            nxt.add(key)
                            break
            nxt -= found
            names = re.compile("|".join(re.escape(n) for n in sorted(nxt)))
            found |= nxt
            frontier = nxt
        return found

    # -- evaluation ----------------------------------------------------------------------------
    def cond_matches(self, cond: _Cond, cls: str, line: int, chain: str) -> Optional[bool]:
        sel = cond.selector
        matched: Optional[bool]
        if sel in ("ip saddr", "ip6 saddr", "iifname", "meta iifname"):
            self.depends = True
            matched = (cls == "pod") if cond.value in self.detector_values else None
        elif sel.startswith("fib saddr") and sel.endswith(" type"):
            self.depends = True
            matched = (cls == "node") if cond.value == "local" else None
        elif sel in ("ip daddr", "ip6 daddr", "meta l4proto", "ip protocol", "ip6 nexthdr", "th dport") or (
            sel.endswith(" dport") or sel == "ct state" or sel.startswith("fib daddr")
        ):
            matched = True  # about the destination, which the dispatch already matched, or "new"
        else:
            matched = None
        if matched is None:
            self.finding(
                WARNING,
                "unknown-rule",
                f"line {line}: chain {chain}: condition '{sel} {'!= ' if cond.negated else ''}{cond.value}' "
                "cannot be evaluated; treated as not matching",
                _service_of(chain),
            )
            return False
        return (not matched) if cond.negated else matched

    def eval_verdict(self, verdict: str, cls: str) -> List[_Out]:
        words = verdict.split()
        if not words:
            return [_Out("fall", 1.0)]
        if words[0] in ("goto", "jump") and len(words) == 2:
            return self.eval_chain(words[1], cls)
        if words[0] in ("drop", "reject"):
            return [_Out(words[0], 1.0)]
        return [_Out("fall", 1.0)]

    def eval_chain(self, name: str, cls: str) -> List[_Out]:  # noqa: C901 - one branch per action
        got = self.memo.get((name, "*"))
        if got is None:
            got = self.memo.get((name, cls))
        if got is not None:
            if (name, "*") not in self.memo:
                self.depends = True
            return got
        key = (name, cls)
        chain = self.table.chains.get(name)
        if chain is None:
            return [_Out("fall", 1.0)]
        if key in self.visiting:
            self.finding(ERROR, "chain-loop", f"line {chain.line}: chain {name} is reached from itself")
            return [_Out("fall", 1.0)]
        outer_depends = self.depends
        self.depends = False
        self.visiting.add(key)
        outs: List[_Out] = []
        remaining = 1.0
        affinity: Optional[int] = None
        local = True if name.startswith("local-") else None
        for idx, rule in enumerate(chain.rules):
            if remaining <= 1e-12:
                break
            a = self.rule(name, idx)
            if a.unknown is not None:
                continue
            act = a.action
            if act.kind == "jump" and act.target and self._is_mark_chain(act.target):
                continue
            if act.kind in ("masq", "mark", "none"):
                continue
            if act.kind == "update":
                continue
            affinity_conds = [c for c in a.conds if c.value.startswith("@") and c.selector in ("ip saddr", "ip6 saddr")]
            if affinity_conds:
                for cond in affinity_conds:
                    aset = self.table.sets.get(cond.value[1:])
                    if aset is not None and aset.timeout_seconds is not None:
                        affinity = max(affinity or 0, aset.timeout_seconds)
                    elif aset is not None:
                        self.finding(
                            WARNING,
                            "affinity-without-timeout",
                            f"line {rule.line}: chain {name}: affinity set {aset.name} has no timeout",
                            _service_of(name),
                        )
                continue  # only returning clients match; new connections go on
            if not all(self.cond_matches(c, cls, rule.line, name) for c in a.conds):
                continue
            hop = (Hop(name, rule.line, rule.text),) if self.paths else ()
            if act.kind in ("goto", "jump"):
                sub = self.eval_chain(act.target or "", cls)
                cont = 0.0
                for o in sub:
                    if o.kind == "fall" and act.kind == "jump":
                        cont += o.weight
                        continue
                    outs.append(o.scaled(remaining, hop, affinity))
                remaining *= cont
            elif act.kind in ("drop", "reject"):
                outs.append(_Out(act.kind, remaining, hop))
                remaining = 0.0
            elif act.kind in ("accept", "return"):
                outs.append(_Out("fall", remaining, hop))
                remaining = 0.0
            elif act.kind == "numgen":
                buckets: Dict[str, int] = {}
                covered: Set[int] = set()
                for k, verdict in act.entries:
                    if not k.isdecimal() or int(k) >= act.mod or int(k) in covered:
                        continue
                    covered.add(int(k))
                    buckets[verdict] = buckets.get(verdict, 0) + 1
                for verdict, count in buckets.items():
                    share = remaining * count / act.mod
                    for o in self.eval_verdict(verdict, cls):
                        outs.append(o.scaled(share, hop, affinity))
                missing = act.mod - len(covered)
                if missing:
                    self.finding(
                        WARNING,
                        "partial-split",
                        f"line {rule.line}: chain {name}: numgen mod {act.mod} maps only {len(covered)} values; "
                        f"{missing}/{act.mod} of new connections fall through",
                        _service_of(name),
                    )
                remaining *= missing / act.mod if act.mod else 0.0
            elif act.kind == "dnat":
                if act.dnat is None or act.dnat[1] is None:
                    self.finding(
                        WARNING,
                        "unknown-rule",
                        f"line {rule.line}: chain {name}: dnat without address and port: {rule.text}",
                        _service_of(name),
                    )
                    continue
                ip, port = act.dnat[0], int(act.dnat[1])
                outs.append(_Out("forward", remaining, hop, (ip, port), affinity, local))
                remaining = 0.0
            else:  # vmap inside a service chain, snat, ...
                self.finding(
                    WARNING,
                    "unknown-rule",
                    f"line {rule.line}: chain {name}: rule not expected here: {rule.text}",
                    _service_of(name),
                )
        if remaining > 1e-12:
            outs.append(_Out("fall", remaining))
        if local:
            outs = [
                _Out(o.kind, o.weight, o.hops, o.backend, o.affinity, True) if o.kind == "forward" else o for o in outs
            ]
        self.visiting.discard(key)
        # A chain whose walk never looked at the source is the same for every class.
        self.memo[key if self.depends else (name, "*")] = outs
        self.depends = self.depends or outer_depends
        return outs

    def _is_mark_chain(self, name: str) -> bool:
        """A chain that only sets the packet mark (kube-proxy's mark-for-masquerade)."""
        got = self.mark_chains.get(name)
        if got is None:
            chain = self.table.chains.get(name)
            if chain is None:
                got = name == "mark-for-masquerade"
            else:
                got = all(self.rule(name, i).action.kind in ("mark", "none") for i in range(len(chain.rules)))
            self.mark_chains[name] = got
        return got

    # -- dispatch ------------------------------------------------------------------------------
    def dispatch_hop(self, map_name: str) -> Tuple[Hop, ...]:
        """The rule that looks ``map_name`` up (``... vmap @service-ips``), as a one-hop path."""
        if self.dispatch is None:
            self.dispatch = {}
            for cname, chain in self.table.chains.items():
                for idx, rule in enumerate(chain.rules):
                    if "@" not in rule.text or "vmap" not in rule.text:  # (only `vmap @map` is a dispatch)
                        continue
                    a = self.rule(cname, idx)
                    if a.action.kind == "vmap" and a.action.target and a.action.target not in self.dispatch:
                        self.dispatch[a.action.target] = (Hop(cname, rule.line, rule.text),)
        return self.dispatch.get(map_name, ())

    def element_routes(
        self,
        entry: Tuple[Hop, ...],
        verdict: str,
        fallback: Optional[Tuple[Tuple[Hop, ...], str]],
        service: Optional[str],
        where: str,
    ) -> Tuple[Optional[Route], Optional[Route], Optional[Route]]:
        """Routes for the three source classes (pod, node, external)."""
        routes: List[Optional[Route]] = []
        last: Optional[List[_Out]] = None
        for cls in _CLASSES:
            base = self.eval_verdict(verdict, cls)
            if base is last and all(o.kind != "fall" for o in base):
                # The walk never looked at the source (one memoised list for every class) and nothing
                # fell through to a class-worded finding: the same route.
                routes.append(routes[-1])
                continue
            last = base
            outs = [o.scaled(1.0, entry) for o in base] if entry else base
            resolved: List[_Out] = []
            for o in outs:
                if o.kind != "fall":
                    resolved.append(o)
                    continue
                if fallback is None:
                    resolved.append(o)
                    continue
                fb_entry, fb_verdict = fallback
                for f in self.eval_verdict(fb_verdict, cls):
                    resolved.append(f.scaled(o.weight, o.hops + fb_entry))
            routes.append(self.make_route(resolved, service, where, cls))
        return routes[0], routes[1], routes[2]

    def make_route(self, outs: List[_Out], service: Optional[str], where: str, cls: str) -> Optional[Route]:
        fwd = [o for o in outs if o.kind == "forward" and o.weight > 1e-12]
        other = [o for o in outs if o.kind != "forward" and o.weight > 1e-12]
        falls = [o for o in other if o.kind == "fall"]
        if falls:
            who = {"pod": "pods", "node": "the node", "external": "external clients"}[cls]
            self.finding(
                WARNING,
                "no-dnat",
                f"{where}: new connections from {who} leave kube-proxy's chains without DNAT or verdict",
                service,
            )
        if fwd:
            if other:
                share = sum(o.weight for o in other)
                self.finding(
                    WARNING,
                    "partial-route",
                    f"{where}: {share:.0%} of new connections are not forwarded ({other[0].kind})",
                    service,
                )
            merged: Dict[Tuple[str, int], List[_Out]] = {}
            for o in fwd:
                assert o.backend is not None
                merged.setdefault(o.backend, []).append(o)
            backends = []
            pre_paths = []
            for (ip, port), group in merged.items():
                first = group[0]
                split = _endpoint_split(first.hops)
                pre_paths.append(first.hops[:split])
                backends.append(
                    Backend(
                        ip=ip,
                        port=port,
                        probability=sum(o.weight for o in group),
                        local=first.local,
                        path=first.hops[split:],
                    )
                )
            backends.sort(key=lambda b: (b.ip, b.port))
            timeouts = [o.affinity for o in fwd if o.affinity is not None]
            affinity = Affinity(timeout_seconds=max(timeouts)) if timeouts else None
            return Route(FROM_ANY, FORWARD, tuple(backends), affinity, _common_prefix(pre_paths))
        verdicts = [o for o in other if o.kind in (DROP, REJECT)]
        if not verdicts:
            return None
        best = max(verdicts, key=lambda o: o.weight)
        return Route(FROM_ANY, best.kind, (), None, best.hops)


def _endpoint_split(hops: Tuple[Hop, ...]) -> int:
    """Index where the last chain's hops (the endpoint chain's dnat) begin."""
    if not hops:
        return 0
    last = hops[-1].chain
    i = len(hops)
    while i > 0 and hops[i - 1].chain == last:
        i -= 1
    return i


def _common_prefix(paths: List[Tuple[Hop, ...]]) -> Tuple[Hop, ...]:
    if not paths:
        return ()
    first = paths[0]
    n = len(first)
    for p in paths[1:]:
        m = 0
        while m < min(n, len(p)) and p[m] == first[m]:
            m += 1
        n = m
    return first[:n]


def _targets(a: _Analysed) -> List[str]:
    out: List[str] = []
    if a.action.kind in ("goto", "jump") and a.action.target:
        out.append(a.action.target)
    for _k, verdict in a.action.entries:
        target = _verdict_target(verdict)
        if target:
            out.append(target)
    return out


def _set_refs(a: _Analysed) -> List[str]:
    refs = [c.value[1:] for c in a.conds if c.value.startswith("@")]
    if a.action.kind in ("vmap", "update") and a.action.target:
        refs.append(a.action.target)
    return refs


def _verdict_target(verdict: Optional[str]) -> Optional[str]:
    if not verdict:
        return None
    words = verdict.split()
    if len(words) == 2 and words[0] in ("goto", "jump"):
        return words[1]
    return None


def _service_of(chain: str) -> Optional[str]:
    parsed = parse_service_chain_name(chain)
    return f"{parsed[0]}/{parsed[1]}" if parsed else None


def _route_sig(route: Optional[Route]) -> Any:
    if route is None:
        return None
    return (
        route.verdict,
        tuple((b.ip, b.port, round(b.probability, 9)) for b in route.backends),
        route.affinity,
    )


def _with_source(route: Route, source: str, prefix: Tuple[Hop, ...] = ()) -> Route:
    return Route(source, route.verdict, route.backends, route.affinity, prefix + route.path)


@dataclass
class _FrontendAcc:
    type: str
    ip: Optional[str]
    port: int
    routes: Tuple[Route, ...]


def _combine(
    pod: Optional[Route], node: Optional[Route], ext: Optional[Route], resolver: _Resolver, where: str, service: str
) -> List[Route]:
    sp, sn, se = _route_sig(pod), _route_sig(node), _route_sig(ext)
    if sp == sn == se:
        return [_with_source(ext, FROM_ANY)] if ext is not None else []
    routes: List[Route] = []
    cluster = pod if sp == sn else (node if sp == se else pod)
    if sp != sn:
        resolver.finding(
            INFO,
            "cluster-sources-differ",
            f"{where}: pods and the node itself are routed differently; 'cluster' shows "
            + ("the node (pods are treated as external clients)" if sp == se else "pods"),
            service,
        )
    if cluster is not None:
        routes.append(_with_source(cluster, FROM_CLUSTER))
    if ext is not None:
        routes.append(_with_source(ext, FROM_EXTERNAL))
    return routes


def _firewall_routes(
    resolver: _Resolver,
    fw_entry: Tuple[Hop, ...],
    verdict: str,
    external: Optional[Route],
    where: str,
    service: str,
    cluster: Optional[Route] = None,
) -> Optional[List[Route]]:
    """The routes of a frontend behind loadBalancerSourceRanges: one per allowed range (what an external
    client from it gets), then "other" dropped. Pods and the node itself meet the same check; where a
    range holds them (the pod CIDR, a node address) and they are routed otherwise than external clients
    (`cluster`: externalTrafficPolicy Local short-circuits them to every endpoint), they get theirs."""
    target = _verdict_target(verdict)
    table = resolver.table
    if target is None or target not in table.chains:
        return None
    chain = table.chains[target]
    allowed: List[str] = []
    drop_hop: Optional[Hop] = None
    for idx, rule in enumerate(chain.rules):
        a = resolver.rule(target, idx)
        saddr = [c for c in a.conds if c.selector in ("ip saddr", "ip6 saddr")]
        if a.action.kind == "drop" and len(a.conds) == 1 and saddr and saddr[0].negated:
            allowed.extend(_set_values(saddr[0].value))
            drop_hop = Hop(target, rule.line, rule.text)
        elif a.unknown is None and a.action.kind in ("mark", "none", "masq"):
            continue
        else:
            resolver.finding(
                WARNING,
                "unknown-rule",
                f"line {rule.line}: chain {target}: firewall rule not understood: {rule.text}",
                service,
            )
    if drop_hop is None:
        return None
    fw_path = fw_entry + ((drop_hop,) if resolver.paths else ())
    routes: List[Route] = []
    if cluster is not None and allowed:
        pods = [c for c in resolver.detector_cidrs if any(cidr_contains(r, c) for r in allowed)]
        table_ips = table.sets[NODEPORT_IPS].elements if NODEPORT_IPS in table.sets else ()
        node = [e.key[0] for e in table_ips if any(cidr_contains(r, e.key[0]) for r in allowed)]
        if pods or node:
            routes.append(
                Route(FROM_CLUSTER, cluster.verdict, cluster.backends, cluster.affinity, fw_path + cluster.path)
            )
            if not (pods and node) and resolver.detector_cidrs:
                who = "the node itself" if pods else "pods"
                resolver.finding(
                    INFO,
                    "firewall-cluster-partial",
                    f"{where}: loadBalancerSourceRanges let in {'pods' if pods else 'the node itself'} but not "
                    f"{who}; 'cluster' is for the ones let in",
                    service,
                )
    if external is not None:
        for cidr in allowed:
            routes.append(Route(cidr, external.verdict, external.backends, external.affinity, fw_path + external.path))
    routes.append(Route(FROM_OTHER, DROP, (), None, fw_path))
    return routes


def resolve_nft(
    ruleset: NftRuleset,
    node: str,
    source_kind: str = "file",
    only: Optional[str] = None,
    paths: Optional[bool] = None,
) -> NodeDataPlane:
    """What kube-proxy's nftables tables say, per service port. ``only`` ("ns/name") keeps one Service.
    ``paths``: keep each route's hops (the rules it takes); by default only for one Service (a trace
    prints them, a map does not)."""
    if paths is None:
        paths = only is not None
    info = NodeInfo(name=node, source=source_kind, proxy_mode="nftables", iptables_backend=None)
    findings: Dict[Tuple[str, str], Tuple[Finding, Optional[str]]] = {}
    tables = ruleset.kube_proxy_tables()
    if not tables:
        f = Finding(ERROR, "no-kube-proxy-table", "no 'table ip kube-proxy' / 'table ip6 kube-proxy' in the dump", node)
        findings[(f.code, f.message)] = (f, None)
    acc: Dict[ServiceKey, Dict[Tuple[str, Optional[str], int], _FrontendAcc]] = {}
    detectors: List[str] = []
    nodeport_addresses: List[str] = []
    for table in tables:
        resolver = _Resolver(table, node, findings, paths=paths)
        resolver.check_rules(only)
        resolver.reachability(only)
        for cidr in resolver.detector_cidrs:
            if cidr not in detectors:
                detectors.append(cidr)
        if NODEPORT_IPS in table.sets:
            for elem in table.sets[NODEPORT_IPS].elements:
                if elem.key[0] not in nodeport_addresses:
                    nodeport_addresses.append(elem.key[0])
        _resolve_table(resolver, acc, only)
    services: List[ServiceRules] = []
    per_service_findings: Dict[str, List[Finding]] = {}
    node_findings: List[Finding] = []
    for finding, service in findings.values():
        if only is not None and service is not None and service != only:
            continue
        if service is not None and any(k.service == service for k in acc):
            per_service_findings.setdefault(service, []).append(finding)
        else:
            node_findings.append(finding)
    for key in sorted(acc):
        fronts = sorted(acc[key].values(), key=lambda f: (FRONTEND_ORDER.get(f.type, 9), f.ip or "", f.port))
        services.append(
            ServiceRules(
                key=key,
                frontends=tuple(Frontend(f.type, f.ip, f.port, node, f.routes) for f in fronts),
                findings=tuple(per_service_findings.get(key.service, ())),
            )
        )
    return NodeDataPlane(
        info=info,
        services=tuple(services),
        findings=tuple(node_findings),
        pod_cidr_detector=",".join(detectors) if detectors else None,
        nodeport_addresses=tuple(nodeport_addresses),
    )


def _element_service(elem: NftElement, protocol_index: int) -> Optional[ServiceKey]:
    target = _verdict_target(elem.verdict)
    if target:
        parsed = parse_service_chain_name(target)
        if parsed:
            return ServiceKey(parsed[0], parsed[1], parsed[3], parsed[2].upper())
    proto = elem.key[protocol_index] if len(elem.key) > protocol_index else "tcp"
    return _key_from_comment(elem.comment, proto)


def _resolve_table(  # noqa: C901 - the dispatch maps, one after another
    resolver: _Resolver,
    acc: Dict[ServiceKey, Dict[Tuple[str, Optional[str], int], _FrontendAcc]],
    only: Optional[str],
) -> None:
    table = resolver.table
    sets = table.sets

    def elements(name: str) -> List[NftElement]:
        nset = sets.get(name)
        return nset.elements if nset is not None else []

    def entry_hops(map_name: str, elem: NftElement) -> Tuple[Hop, ...]:
        if not resolver.paths:
            return ()
        return resolver.dispatch_hop(map_name) + (Hop(map_name, elem.line, elem.text),)

    for map_name in (SERVICE_IPS, SERVICE_NODEPORTS, NO_ENDPOINT_SERVICES, NO_ENDPOINT_NODEPORTS, FIREWALL_IPS):
        if elements(map_name) and not resolver.dispatch_hop(map_name):
            resolver.finding(WARNING, "unreferenced-map", f"map {map_name} has elements but no rule uses it")

    cluster_ips = {e.key[0] for e in elements(CLUSTER_IPS)}
    has_cluster_ips_set = CLUSTER_IPS in sets
    no_ep_services = {e.key: e for e in elements(NO_ENDPOINT_SERVICES)}
    no_ep_nodeports = {e.key: e for e in elements(NO_ENDPOINT_NODEPORTS)}
    firewall = {e.key: e for e in elements(FIREWALL_IPS)}

    # Which service ports have a node port (for the ExternalIP/LoadBalancer guess).
    with_node_port: Set[ServiceKey] = set()
    for elem in elements(SERVICE_NODEPORTS) + elements(NO_ENDPOINT_NODEPORTS):
        key = _element_service(elem, 0)
        if key is not None:
            with_node_port.add(key)

    def add(key: ServiceKey, ftype: str, ip: Optional[str], port: int, routes: List[Route]) -> None:
        acc.setdefault(key, {})[(ftype, ip, port)] = _FrontendAcc(ftype, ip, port, tuple(routes))
        # The frontend's walks are memoised (resolver.memo); the rules they read are let go (a
        # 10,000-service table holds 220,000, most read by one frontend's walk only).
        resolver.analysed.clear()

    def wanted(key: ServiceKey) -> bool:
        return only is None or key.service == only

    def port_of(text: str) -> Optional[int]:
        return int(text) if text.isdecimal() else None

    def external_type(elem: NftElement, key: ServiceKey, ip: str) -> str:
        """An external IP and a load-balancer IP look alike in nft mode: LoadBalancer when source
        ranges guard it, or when the service has node ports and the address is globally routable."""
        if elem.key in firewall or (key in with_node_port and _is_global(ip)):
            return LOAD_BALANCER
        return EXTERNAL_IP

    def with_firewall(elem: NftElement, routes: Tuple[Route, ...], where: str, key: ServiceKey) -> Tuple[Route, ...]:
        """Routes of a frontend that firewall-ips guards (loadBalancerSourceRanges), else unchanged."""
        fw = firewall.get(elem.key)
        if fw is None:
            return routes
        external_view = next((r for r in routes if r.source in (FROM_ANY, FROM_EXTERNAL)), None)
        cluster_view = next((r for r in routes if r.source == FROM_CLUSTER), None)
        fw_routes = _firewall_routes(
            resolver, entry_hops(FIREWALL_IPS, fw), fw.verdict or "", external_view, where, key.service, cluster_view
        )
        return fw_routes if fw_routes is not None else routes

    seen_service_keys: Set[Tuple[str, ...]] = set()
    for elem in elements(SERVICE_IPS):
        if len(elem.key) != 3 or port_of(elem.key[2]) is None:
            resolver.finding(WARNING, "unknown-element", f"line {elem.line}: map {SERVICE_IPS}: element {elem.text}")
            continue
        key = _element_service(elem, 1)
        if key is None:
            resolver.finding(
                WARNING,
                "unknown-service",
                f"line {elem.line}: map {SERVICE_IPS}: cannot tell the service of {elem.text}",
            )
            continue
        seen_service_keys.add(elem.key)
        if not wanted(key):
            continue
        ip, port = elem.key[0], int(elem.key[2])
        target = _verdict_target(elem.verdict) or ""
        if ip in cluster_ips or target.startswith(("service-", "local-")):
            ftype = CLUSTER_IP
        else:
            ftype = external_type(elem, key, ip)
        where = f"{ftype} {ip}:{port} ({key})"
        fb = no_ep_services.get(elem.key)
        fallback = (entry_hops(NO_ENDPOINT_SERVICES, fb), fb.verdict or "") if fb is not None else None
        pod, nodecls, ext = resolver.element_routes(
            entry_hops(SERVICE_IPS, elem), elem.verdict or "", fallback, key.service, where
        )
        routes = with_firewall(elem, _combine(pod, nodecls, ext, resolver, where, key.service), where, key)
        add(key, ftype, ip, port, routes)

    # Service IPs without (usable) endpoints: only the filter-hook check knows them.
    by_service: Dict[ServiceKey, List[NftElement]] = {}
    for elem in elements(NO_ENDPOINT_SERVICES):
        if elem.key in seen_service_keys:
            continue
        if len(elem.key) != 3 or port_of(elem.key[2]) is None:
            resolver.finding(
                WARNING, "unknown-element", f"line {elem.line}: map {NO_ENDPOINT_SERVICES}: element {elem.text}"
            )
            continue
        key = _element_service(elem, 1)
        if key is None:
            resolver.finding(
                WARNING,
                "unknown-service",
                f"line {elem.line}: map {NO_ENDPOINT_SERVICES}: cannot tell the service of {elem.text}",
            )
            continue
        if wanted(key):
            by_service.setdefault(key, []).append(elem)
    for key, elems in by_service.items():
        for elem in elems:
            ip, port = elem.key[0], int(elem.key[2])
            if ip in cluster_ips or (not has_cluster_ips_set and len(elems) == 1):
                ftype = CLUSTER_IP
            else:
                ftype = external_type(elem, key, ip)
            where = f"{ftype} {ip}:{port} ({key})"
            pod, nodecls, ext = resolver.element_routes(
                entry_hops(NO_ENDPOINT_SERVICES, elem), elem.verdict or "", None, key.service, where
            )
            routes = with_firewall(elem, _combine(pod, nodecls, ext, resolver, where, key.service), where, key)
            add(key, ftype, ip, port, routes)

    # Node ports.
    seen_np: Set[Tuple[str, ...]] = set()
    for map_name in (SERVICE_NODEPORTS, NO_ENDPOINT_NODEPORTS):
        for elem in elements(map_name):
            if map_name == NO_ENDPOINT_NODEPORTS and elem.key in seen_np:
                continue
            if len(elem.key) != 2 or port_of(elem.key[1]) is None:
                resolver.finding(WARNING, "unknown-element", f"line {elem.line}: map {map_name}: element {elem.text}")
                continue
            seen_np.add(elem.key)
            key = _element_service(elem, 0)
            if key is None:
                resolver.finding(
                    WARNING,
                    "unknown-service",
                    f"line {elem.line}: map {map_name}: cannot tell the service of {elem.text}",
                )
                continue
            if not wanted(key):
                continue
            port = int(elem.key[1])
            where = f"{NODE_PORT} {port} ({key})"
            fallback = None
            if map_name == SERVICE_NODEPORTS and elem.key in no_ep_nodeports:
                fb = no_ep_nodeports[elem.key]
                fallback = (entry_hops(NO_ENDPOINT_NODEPORTS, fb), fb.verdict or "")
            pod, nodecls, ext = resolver.element_routes(
                entry_hops(map_name, elem), elem.verdict or "", fallback, key.service, where
            )
            add(key, NODE_PORT, None, port, _combine(pod, nodecls, ext, resolver, where, key.service))
