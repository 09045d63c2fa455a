"""What runs on a node: a fixed, read-only list of commands, and which iptables backend to believe.

    dumps = collect_node(runner, "node01")
    plane = kubectl_svcnet.dataplane.read_node(dumps.dumps, "node01", "ssh")

Every command is a constant below. Nothing from the API (node names, service names, addresses) ever
enters a command: the node's name is used only to label the dumps and in messages. A runner quotes
each word with `shlex.quote` (over SSH); no shell string is built from data.

The commands, in order (a program the node does not have is skipped, not an error):

1. `PROBE` — one `sh -c` listing which of `PROGRAMS` exist, and the user id.
2. iptables: `iptables-nft-save`, `ip6tables-nft-save`, `iptables-legacy-save`,
   `ip6tables-legacy-save` where present (else `iptables-save`, `ip6tables-save`). A node can hold
   rules in both backends, and the wrong one shows an empty or stale picture, so the backend is chosen
   as kubernetes-sigs/iptables-wrappers does (`pkg/xtables/detect.go`): kubelet's
   `KUBE-IPTABLES-HINT` / `KUBE-KUBELET-CANARY` chain in the nft backend's mangle table (IPv4, then
   IPv6) means nft; else that chain anywhere in the legacy backend means legacy; else nft (here: else
   the one backend holding kube-proxy chains, if only one does). Only the chosen backend's dumps are
   returned; a warning says when the other backend also holds `KUBE-` chains. (`iptables-legacy-save`
   runs without `-t`: asking for a table would create it.)
3. nftables: `nft list table ip kube-proxy` and `nft list table ip6 kube-proxy` (absent: skipped).
4. IPVS, only when the iptables rules show kube-proxy's IPVS mode (ipvsadm would otherwise load the
   ip_vs module, which is not read-only): `ipvsadm-save -n`, `ipset list` — returned with the dumps
   when `dataplane.detect_format` knows them, else in `extra` with a warning.
5. Optionally (`healthz=True`): kube-proxy's `/healthz` on 127.0.0.1:10256, read on the node, with the
   first of `HEALTHZ` (curl), `HEALTHZ_PYTHON` (python3, a constant script), `HEALTHZ_WGET` (wget) the
   node has — each one fixed argv, no proxy, 2 s at most, printing the body and the HTTP status (503
   means kube-proxy is unhealthy). Unreachable (no kube-proxy healthz, none of the three programs) is
   not an error: the last sync is then unknown. `parse_healthz` reads the answer (pure).

Over a network (`runner.remote`) and when the node has gzip, dumps travel compressed:
``sh -c GZIP_SCRIPT sh <program> <args>`` — a constant script that pipes the program through
``gzip -c`` and keeps the program's exit status.

For `trace` (``only="ns/name"``, validated as DNS-1123 names) and when the node has awk, each
iptables-save runs through `nodefilter.FILTER_SCRIPT`: a constant awk program, with the Service's name
as one argv word, that sends only the lines the trace reads, each at its own line number (48 MB -> a
few KB on a 10,000-service node). In IPVS mode, or for output that is not plain iptables-save, the node
sends the whole dump; a failed filter falls back to the plain command. `NodeDumps.notes` says which.
So does each `nft list table` (`nodefilter.NFT_AWK_PROGRAM`, 27 MB -> 10 KB), sent whole when its text
is not what the program reads, and in IPVS mode `ipvsadm-save -n` and `ipset list` (`ipvsfilter.py`: the
Service's virtual servers, from the API's objects, as argv words checked to be addresses and ports). All
three run through `_filtered`: a filter that fails or sends damaged output costs a plain run.
"""

from __future__ import annotations

import gzip
import json
import re
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from kubectl_svcnet.collect.runner import CommandFailed, Result, Runner, tail
from kubectl_svcnet.errors import NodeAccessError

NFT = "nft"
LEGACY = "legacy"

PROGRAMS: Tuple[str, ...] = (
    "gzip",
    "awk",
    "iptables-save",
    "ip6tables-save",
    "iptables-nft-save",
    "ip6tables-nft-save",
    "iptables-legacy-save",
    "ip6tables-legacy-save",
    "nft",
    "ipvsadm-save",
    "ipset",
    "curl",
    "python3",
    "wget",
)
PROBE_SCRIPT = (
    'printf "uid=%s\\n" "$(id -u 2>/dev/null)"; '
    'for p in "$@"; do if command -v "$p" >/dev/null 2>&1; then printf "have=%s\\n" "$p"; fi; done; exit 0'
)
PROBE: Tuple[str, ...] = ("sh", "-c", PROBE_SCRIPT, "sh", *PROGRAMS)

# Runs "$@" with its stdout through gzip; exits with the program's status, not gzip's (POSIX sh has
# no pipefail): the status travels out of the pipeline on fd 4 into a command substitution.
GZIP_SCRIPT = 'exec 3>&1; s=$( { { "$@"; echo "$?" >&4; } | gzip -c >&3; } 4>&1 ); exit "${s:-1}"'

IPTABLES_V4 = {NFT: ("iptables-nft-save",), LEGACY: ("iptables-legacy-save",), None: ("iptables-save",)}
IPTABLES_V6 = {NFT: ("ip6tables-nft-save",), LEGACY: ("ip6tables-legacy-save",), None: ("ip6tables-save",)}
NFT_TABLES: Tuple[Tuple[str, ...], ...] = (
    ("nft", "list", "table", "ip", "kube-proxy"),
    ("nft", "list", "table", "ip6", "kube-proxy"),
)
IPVSADM_SAVE: Tuple[str, ...] = ("ipvsadm-save", "-n")
IPSET_LIST: Tuple[str, ...] = ("ipset", "list")
# kube-proxy's healthz server (--healthz-bind-address, default 0.0.0.0:10256), asked on the node's loopback.
# Every fetcher prints the body, a newline and the HTTP status (curl: `-w`; wget prints its headers, the
# status among them, on stderr). No proxy: a node's http_proxy must not see this request.
HEALTHZ_URL = "http://127.0.0.1:10256/healthz"
HEALTHZ: Tuple[str, ...] = ("curl", "-s", "--noproxy", "*", "--max-time", "2", "-w", "\\n%{http_code}\\n", HEALTHZ_URL)
HEALTHZ_PY_SCRIPT = (
    "import sys, urllib.request as u\n"
    "o = u.build_opener(u.ProxyHandler({}))\n"
    "try:\n"
    "    r = o.open('" + HEALTHZ_URL + "', timeout=2)\n"
    "    code, body = r.status, r.read()\n"
    "except u.HTTPError as e:\n"
    "    code, body = e.code, e.read()\n"
    "sys.stdout.write(body.decode('utf-8', 'replace') + '\\n' + str(code) + '\\n')\n"
)
HEALTHZ_PYTHON: Tuple[str, ...] = ("python3", "-c", HEALTHZ_PY_SCRIPT)
HEALTHZ_WGET: Tuple[str, ...] = ("wget", "-S", "--timeout=2", "--tries=1", "--no-proxy", "--content-on-error", "-O",
                                 "-", HEALTHZ_URL)  # fmt: skip
HEALTHZ_FETCHERS: Tuple[Tuple[str, ...], ...] = (HEALTHZ, HEALTHZ_PYTHON, HEALTHZ_WGET)

# Every argv collect_node can send (before the gzip wrapper / sudo prefix), for tests and audits.
ALL_COMMANDS: Tuple[Tuple[str, ...], ...] = (
    PROBE,
    *IPTABLES_V4.values(),
    *IPTABLES_V6.values(),
    *NFT_TABLES,
    IPVSADM_SAVE,
    IPSET_LIST,
    *HEALTHZ_FETCHERS,
)
DUMP_TIMEOUT = 120.0
SMALL_TIMEOUT = 20.0

# Whole-dump checks are plain substring searches (a line start is "\n" or the text's start): a regex
# alternation scans a 5 MB dump at about 30 MB/s, `in` at several GB/s, and these checks ran on every
# node's full dump (the IPVS check alone was 80% of the client's CPU per node in benchmarks/fanout.py).
_HINT_LINES = (":KUBE-IPTABLES-HINT ", ":KUBE-KUBELET-CANARY ")
_IPVS_LINES = (":KUBE-LOAD-BALANCER ", ":KUBE-NODE-PORT ")
_KUBE_CHAIN = re.compile(r"^:(KUBE-[A-Z0-9-]+) ", re.M)
_KUBE_RULE = re.compile(r"^-A KUBE-", re.M)
_PROXY_CHAINS = re.compile(r"^:KUBE-(SERVICES|NODEPORTS|POSTROUTING|SVC-|SEP-|EXT-|FW-|MARK-MASQ)", re.M)
_HEADER_BACKEND = re.compile(r"^# Generated by ip6?tables(?:-nft|-legacy)?-save v\S+(?: \((nf_tables|legacy)\))?", re.M)
_NO_TABLE = ("no such file or directory", "does not exist")


@dataclass
class NodeDumps:
    """What a node's commands returned: dumps as (text, source) for `dataplane.read_node`."""

    node: str
    dumps: List[Tuple[str, str]] = field(default_factory=list)
    backend: Optional[str] = None  # the iptables backend kube-proxy uses: "nft" | "legacy" | None
    backend_reason: str = ""
    warnings: List[str] = field(default_factory=list)
    extra: List[Tuple[str, str]] = field(default_factory=list)  # outputs read_node does not recognise
    healthz: Optional[str] = None  # kube-proxy's /healthz answer (JSON text), when asked for
    healthz_status: Optional[int] = None  # its HTTP status (200 healthy, 503 not), when known
    stale_backend: Optional[str] = None  # the iptables backend not chosen, when it also holds kube-proxy chains
    backend_warning: Optional[str] = None  # one line about that, for `nodes` (also in `warnings`)
    commands: List[str] = field(default_factory=list)  # what ran, quoted, in order
    notes: List[str] = field(default_factory=list)  # how the dumps were read (filtered or whole), for debugging
    uid: Optional[str] = None
    programs: Tuple[str, ...] = ()


# ---------------------------------------------------------------------------------------------
# Backend choice (pure).


def _mangle(text: str) -> str:
    """The mangle table's part of an iptables-save dump ("" if it has none)."""
    start = text.find("*mangle\n")
    if start < 0:
        return ""
    end = text.find("\nCOMMIT", start)
    return text[start : end if end >= 0 else len(text)]


def _has_line(text: str, starts: Sequence[str]) -> bool:
    """Whether a line of `text` starts with one of `starts`."""
    return text.startswith(tuple(starts)) or any("\n" + s in text for s in starts)


def has_kubelet_hint(text: str, mangle_only: bool = False) -> bool:
    return _has_line(_mangle(text) if mangle_only else text, _HINT_LINES)


def shows_ipvs(text: str) -> bool:
    """kube-proxy's IPVS mode in its iptables rules: ipset matches, or its IPVS-only chains."""
    return "--match-set KUBE-" in text or _has_line(text, _IPVS_LINES)


def kube_proxy_chains(text: str, rules: Optional[int] = None) -> Tuple[List[str], int]:
    """kube-proxy's chains in a dump (kubelet's canary/hint chains excluded) and its KUBE- rule count
    (`rules`: the count the node made, for a filtered dump)."""
    chains = sorted({m.group(1) for m in _KUBE_CHAIN.finditer(text)} - {"KUBE-IPTABLES-HINT", "KUBE-KUBELET-CANARY"})
    return chains, len(_KUBE_RULE.findall(text)) if rules is None else rules


def choose_backend(nft: Sequence[str], legacy: Sequence[str]) -> Tuple[str, str]:
    """(backend, why) from the nft backend's dumps and the legacy backend's (IPv4 first, then IPv6),
    the way iptables-wrappers decides."""
    for i, text in enumerate(nft):
        if has_kubelet_hint(text, mangle_only=True):
            return NFT, f"kubelet's hint chain in ip{'6' if i else ''}tables-nft-save -t mangle"
    for i, text in enumerate(legacy):
        if has_kubelet_hint(text):
            return LEGACY, f"kubelet's hint chain in ip{'6' if i else ''}tables-legacy-save"
    nft_kube = any(_PROXY_CHAINS.search(t) for t in nft)
    legacy_kube = any(_PROXY_CHAINS.search(t) for t in legacy)
    if legacy_kube and not nft_kube:
        return LEGACY, "no kubelet hint chain; only the legacy backend holds kube-proxy chains"
    return NFT, "no kubelet hint chain in either backend; nft is the default"


def header_backend(text: str) -> Optional[str]:
    m = _HEADER_BACKEND.search(text)
    if not m:
        return None
    return NFT if m.group(1) == "nf_tables" else LEGACY


def has_tables(text: str) -> bool:
    return _has_line(text, ("*",))


# ---------------------------------------------------------------------------------------------
# Running.


def _argv(command: Sequence[str], compress: bool) -> List[str]:
    return ["sh", "-c", GZIP_SCRIPT, "sh", *command] if compress else list(command)


def _decode(result: Result, compressed: bool, node: str) -> str:
    data = result.stdout if isinstance(result.stdout, bytes) else result.stdout.encode()
    if compressed and data:
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as e:
            raise NodeAccessError(f"compressed output of {result.command} is damaged: {e}", where=node) from None
    return data.decode("utf-8", errors="replace")


class _Session:
    def __init__(self, runner: Runner, node: str, out: NodeDumps, compress: bool):
        self.runner = runner
        self.node = node
        self.out = out
        self.compress = compress
        self.failures: List[str] = []

    def run(self, command: Sequence[str], timeout: float, compressible: bool = True) -> Optional[str]:
        """stdout of `command`, or None if it is missing or failed (failures noted)."""
        packed = self.compress and compressible
        argv = _argv(command, packed)
        result = self.runner.run(argv, timeout=timeout, check=False)
        self.out.commands.append(result.command)
        return self.output(command, result, packed)

    def output(self, command: Sequence[str], result: Result, packed: bool) -> Optional[str]:
        """stdout of a run of `command`, or None if it is missing or failed (failures noted)."""
        if result.not_found:
            return None
        if result.exit_code != 0:
            self.failures.append(f"{' '.join(command)} exited {result.exit_code}: {tail(result.stderr, 160)}")
            return None
        return _decode(result, packed, self.node)


def collect_node(
    runner: Runner,
    node_name: str,
    healthz: bool = False,
    compress: Optional[bool] = None,
    timeout: float = DUMP_TIMEOUT,
    only: Optional[str] = None,
    ipvs_wanted: Optional[Any] = None,
) -> NodeDumps:
    """Run the fixed command list on one node; returns its dumps, the chosen iptables backend and
    warnings. Raises NodeAccessError when the node cannot be reached or nothing could be read.
    `only` ("ns/name", `trace`): iptables dumps hold just what that Service's trace reads, when the
    node can filter (see nodefilter.py); a dump is then not fit for anything else. `ipvs_wanted`
    (dataplane.ipvs.Wanted: `only`'s virtual servers, from the API's objects): so do IPVS dumps (see
    ipvsfilter.py)."""
    out = NodeDumps(node_name)
    probe = runner.run(PROBE, timeout=SMALL_TIMEOUT, check=False)
    out.commands.append(probe.command)
    if probe.exit_code != 0:
        raise CommandFailed(probe, where=node_name)
    have = set()
    for line in probe.text.splitlines():
        key, _, value = line.partition("=")
        if key == "have" and value in PROGRAMS:
            have.add(value)
        elif key == "uid":
            out.uid = value.strip() or None
    out.programs = tuple(p for p in PROGRAMS if p in have)
    packed = runner.remote and "gzip" in have if compress is None else (compress and "gzip" in have)
    s = _Session(runner, node_name, out, packed)
    only = _filter_for(only, have, out)
    rules: Dict[str, int] = {}  # source -> the node's count of KUBE- rules, for filtered dumps

    # iptables, both backends where both exist.
    ipvs = False
    variants = [b for b in (NFT, LEGACY) if IPTABLES_V4[b][0] in have or IPTABLES_V6[b][0] in have]
    texts: Dict[Optional[str], List[Tuple[str, str]]] = {}

    def save(backend: Optional[str]) -> None:
        """The IPv4 and IPv6 dumps of one backend (None: whatever `iptables-save` is), into `texts`."""
        for table in (IPTABLES_V4[backend], IPTABLES_V6[backend]):
            if table[0] in have:
                source = f"{node_name}:{table[0]}"
                text = _save(s, table, timeout, only, rules, source)
                if text is not None:
                    texts.setdefault(backend, []).append((text, source))

    if variants:
        for b in variants:
            save(b)
        if texts:
            chosen, why = choose_backend(
                [t for t, _ in texts.get(NFT, [])], [t for t, _ in texts.get(LEGACY, [])]
            ) if len(texts) > 1 else (next(iter(texts)), "the only iptables backend on the node")  # fmt: skip
            out.backend, out.backend_reason = chosen, why
            other = LEGACY if chosen == NFT else NFT
            stale = [kube_proxy_chains(t, rules.get(src)) for t, src in texts.get(other, [])]
            chains = sorted({c for cs, _ in stale for c in cs})
            if chains:
                n_rules = sum(n for _, n in stale)
                shown = ", ".join(chains[:4]) + (", …" if len(chains) > 4 else "")
                note = (
                    f"the {other} iptables backend also holds kube-proxy chains ({shown}; {n_rules} rules);"
                    f" ignored as stale — kube-proxy uses {chosen} ({why})"
                )
                out.stale_backend, out.backend_warning = other, note
                out.warnings.append(f"node {node_name}: {note}")
    else:
        save(None)
        if texts:
            out.backend = next((header_backend(t) for t, _ in texts[None] if header_backend(t)), None)
            out.backend_reason = "iptables-save's header"
    for text, source in texts.get(out.backend if variants else None, []):
        if has_tables(text):
            out.dumps.append((text, source))
            ipvs = ipvs or shows_ipvs(text)

    # nftables mode.
    if "nft" in have:
        for cmd in NFT_TABLES:
            result_text = _nft_table(s, cmd, timeout, only)
            if result_text:
                out.dumps.append((result_text, f"{node_name}:nft-{cmd[3]}-{cmd[4]}"))

    # IPVS mode: only when the rules say so (ipvsadm would load ip_vs otherwise).
    if ipvs:
        if "ipvsadm-save" in have:
            from kubectl_svcnet.collect import ipvsfilter

            # For a trace, through the node-side filter (ipvsfilter.py): its words are the Service's virtual
            # servers, each checked to be an address,port or a port; anything else reads the dumps whole.
            words = ipvsfilter.words_for(ipvs_wanted) if only is not None and ipvs_wanted is not None else None
            if only is not None and ipvs_wanted is not None and words is None:
                out.notes.append(f"{only}'s addresses or ports are not all IPs and ports: IPVS dumps read whole")

            unread = []
            for cmd, label in ((IPVSADM_SAVE, "ipvsadm-save"), (IPSET_LIST, "ipset-list")):
                if cmd[0] not in have:
                    continue
                if words is None:
                    text = s.run(cmd, timeout)
                else:
                    argv = ipvsfilter.filter_command(cmd, words)
                    text, _ = _filtered(s, cmd, argv, timeout, only or "", cmd[0], "not its usual output")
                if text is None:
                    continue
                if _readable(text):
                    out.dumps.append((text, f"{node_name}:{label}"))
                else:
                    out.extra.append((text, f"{node_name}:{label}"))
                    unread.append(label)
            if unread:
                out.warnings.append(
                    f"node {node_name}: kube-proxy runs in IPVS mode; {', '.join(unread)} collected but not"
                    " analysed — the map shows what the iptables rules say"
                )
        else:
            out.warnings.append(f"node {node_name}: kube-proxy runs in IPVS mode but ipvsadm-save is not installed")

    if healthz:
        _read_healthz(s, have)

    if not out.dumps:
        raise NodeAccessError(_nothing_read(node_name, out, s, have, runner), where=node_name)
    out.warnings.extend(f"node {node_name}: {f}" for f in s.failures)
    return out


def _filter_for(only: Optional[str], have: set, out: NodeDumps) -> Optional[str]:
    """The Service to filter iptables dumps for, or None: read them whole."""
    from kubectl_svcnet.collect.nodefilter import valid_service

    if only is None:
        return None
    if not valid_service(only):
        out.notes.append(f"{only!r} is not a namespace/name: dumps read whole")
        return None
    if "awk" not in have:
        out.notes.append("no awk on the node: dumps read whole")
        return None
    return only


def _save(
    s: _Session, command: Sequence[str], timeout: float, only: Optional[str], rules: Dict[str, int], source: str
) -> Optional[str]:
    """An iptables-save's text: for `only`, through the node-side filter (rebuilt with every kept line on
    its line number; the node's KUBE- rule count goes to `rules`), else whole. A filter that fails or
    sends damaged output costs one more run, of the plain command: the user sees no difference."""
    if only is None:
        return s.run(command, timeout)
    from kubectl_svcnet.collect import nodefilter

    argv = nodefilter.filter_command(command, only)
    text, dump = _filtered(s, command, argv, timeout, only, command[0], "IPVS mode, or not plain iptables-save output")
    if dump is not None:
        rules[source] = dump.kube_rules
    return text


def _filtered(
    s: _Session,
    command: Sequence[str],
    argv: Sequence[str],
    timeout: float,
    only: str,
    label: str,
    whole_why: str,
    plain: Optional[Callable[[], Optional[str]]] = None,
    read: Optional[Callable[[Result], Optional[str]]] = None,
) -> Tuple[Optional[str], Any]:
    """`command`'s output through a node-side filter (`argv`: nodefilter's or ipvsfilter's program), every
    sent line back on its own line number (nodefilter.rebuild) -> (text, its FilteredDump, or None when the
    node sent the text whole). A filter that fails or sends damaged output costs one more run, of `command`
    alone (`plain`); output the program leaves whole (`whole_why`) is taken as it is. Each case is noted:
    the user sees no difference. `read`: the run's text, or None (default: `_Session.output`)."""
    from kubectl_svcnet.collect import nodefilter

    result = s.runner.run(_argv(argv, s.compress), timeout=timeout, check=False)
    s.out.commands.append(result.command)
    if result.exit_code == nodefilter.AWK_FAILED:
        s.out.notes.append(f"{label}: the filter failed ({tail(result.stderr, 160)}); read whole")
        return (plain or (lambda: s.run(command, timeout)))(), None
    text = read(result) if read is not None else s.output(command, result, s.compress)
    if not text or not nodefilter.is_filtered(text):
        if text:
            s.out.notes.append(f"{label}: sent whole by the node ({whole_why})")
        return text, None
    dump = nodefilter.rebuild(text)
    if dump is None:
        s.out.notes.append(f"{label}: the filter's output is damaged; read whole")
        return (plain or (lambda: s.run(command, timeout)))(), None
    s.out.notes.append(f"{label}: {dump.kept} of {dump.lines} lines sent for {only} ({len(result.stdout)} bytes)")
    return dump.text, dump


def _read_healthz(s: _Session, have: set) -> None:
    """kube-proxy's /healthz through the first fetcher the node has; unreachable is not an error."""
    for cmd in HEALTHZ_FETCHERS:
        if cmd[0] not in have:
            continue
        result = s.runner.run(list(cmd), timeout=SMALL_TIMEOUT, check=False)
        s.out.commands.append(result.command)
        if result.not_found:
            continue
        body, status = split_healthz_output(result.text)
        if cmd is HEALTHZ_WGET:
            codes = [m.group(1) or m.group(2) for m in _WGET_STATUS.finditer(result.stderr)]
            status = int(codes[-1]) if codes else None
            body = result.text.strip()
        if status is None and result.exit_code != 0:
            return  # nothing listens there (or no answer within 2 s): the last sync stays unknown
        if status == 0:
            return  # curl's "000": no HTTP answer
        s.out.healthz = body or None
        s.out.healthz_status = status
        return


_WGET_STATUS = re.compile(r"HTTP/\d(?:\.\d)? (\d{3})|ERROR (\d{3})")


def split_healthz_output(text: str) -> Tuple[str, Optional[int]]:
    """A fetcher's output -> (body, HTTP status or None): the status is the last line when it is three
    digits (curl's `-w '\\n%{http_code}\\n'`, the python3 script)."""
    stripped = text.rstrip("\r\n")
    body, sep, last = stripped.rpartition("\n")
    if sep and len(last.strip()) == 3 and last.strip().isdigit():
        return body.strip(), int(last.strip())
    return stripped.strip(), None


# ---------------------------------------------------------------------------------------------
# kube-proxy's /healthz answer (pure).
#
# pkg/proxy/healthcheck/proxier_health.go writes
#     {"lastUpdated": %q,"currentTime": %q, "nodeEligible": %v}
# with Go's %q of a time.Time, i.e. time.Time.String(): "2026-01-02 15:04:05.123456789 +0000 UTC", plus
# " m=+12.345" when the value carries a monotonic reading (clock.Now() does). Older releases send only the
# two times (no `nodeEligible`). Status 503 means unhealthy: an update queued longer than the healthz
# timeout ago (rules stale), or the node not eligible (being deleted, or tainted
# ToBeDeletedByClusterAutoscaler). Current releases report lastUpdated = currentTime while healthy, and the
# time of the last successful sync when not; older ones always the time their sync loop last ran.
# The zero time ("0001-01-01 00:00:00 +0000 UTC") means kube-proxy has not synced yet.

_GO_TIME = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[ T](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?"
    r"(?:\s*(Z|[+-]\d{2}:?\d{2}))?(?:\s+[A-Za-z0-9+-]+)?(?:\s+m=[+-]\d+(?:\.\d+)?)?$"
)


def parse_go_time(text: Any) -> Optional[datetime]:
    """Go's time.Time.String() (what kube-proxy's healthz prints) or RFC 3339 -> an aware datetime.
    None for the zero time and for anything unreadable."""
    if not isinstance(text, str):
        return None
    m = _GO_TIME.match(text.strip())
    if not m:
        return None
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    if year <= 1:
        return None  # Go's zero time: never
    frac, off = m.group(7), m.group(8)
    micro = int((frac or "0").ljust(6, "0")[:6])
    tz = timezone.utc
    if off and off != "Z":
        sign = -1 if off[0] == "-" else 1
        digits = off[1:].replace(":", "")
        tz = timezone(sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:])))
    try:
        return datetime(year, month, day, hour, minute, second, micro, tzinfo=tz)
    except ValueError:
        return None


def rfc3339(t: datetime) -> str:
    """UTC, whole seconds, "Z" (what Kubernetes' metav1.Time prints)."""
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_healthz(body: Optional[str], status: Optional[int]) -> Dict[str, Any]:
    """kube-proxy's /healthz answer -> {"lastSync": RFC 3339 | None, "healthy": bool | None,
    "syncAgeSeconds": int | None, "nodeEligible": bool | None}. The age is currentTime - lastUpdated,
    both from the node's own clock (no skew with this machine). healthy: 200 True, 503 False, else None."""
    out: Dict[str, Any] = {"lastSync": None, "healthy": None, "syncAgeSeconds": None, "nodeEligible": None}
    if status == 200:
        out["healthy"] = True
    elif status == 503:
        out["healthy"] = False
    doc: Any = None
    if body:
        try:
            doc = json.loads(body)
        except ValueError:
            doc = None
    if not isinstance(doc, dict):
        return out
    eligible = doc.get("nodeEligible")
    out["nodeEligible"] = eligible if isinstance(eligible, bool) else None
    last, now = parse_go_time(doc.get("lastUpdated")), parse_go_time(doc.get("currentTime"))
    if last is not None:
        out["lastSync"] = rfc3339(last)
        if now is not None:
            out["syncAgeSeconds"] = max(0, int((now - last).total_seconds()))
    return out


def _readable(text: str) -> bool:
    """Whether `dataplane.read_node` recognises this output (IPVS support arrived later than IPVS
    collection: what it cannot read yet is kept apart in NodeDumps.extra)."""
    from kubectl_svcnet.dataplane import detect_format

    return bool(text) and not text.isspace() and detect_format(text) is not None  # (strip() would copy the dump)


def _nft_table(s: _Session, cmd: Sequence[str], timeout: float, only: Optional[str] = None) -> Optional[str]:
    """One `nft list table` (None: absent, empty or failed, failures noted). For `only`, through the
    node-side filter (nodefilter.NFT_AWK_PROGRAM), rebuilt with every sent line on its line number; a
    filter that fails or sends damaged output costs one more run, of the plain command."""
    if only is not None:
        return _nft_filtered(s, cmd, timeout, only)
    packed = s.compress
    result = s.runner.run(_argv(cmd, packed), timeout=timeout, check=False)
    s.out.commands.append(result.command)
    return _nft_text(s, cmd, result, packed)


def _nft_text(s: _Session, cmd: Sequence[str], result: Result, packed: bool) -> Optional[str]:
    """What an `nft list table` run gave: None for no table (not an error), a failure (noted), or nothing."""
    if result.not_found:
        return None
    if result.exit_code != 0:
        if not any(m in result.stderr.lower() for m in _NO_TABLE):
            s.failures.append(f"{' '.join(cmd)} exited {result.exit_code}: {tail(result.stderr, 160)}")
        return None
    text = _decode(result, packed, s.node)
    return None if not text or text.isspace() else text  # (strip() would copy a 27 MB table)


def _nft_filtered(s: _Session, cmd: Sequence[str], timeout: float, only: str) -> Optional[str]:
    """`nft list table` through the filter for `only` (see nodefilter.py), as `_save` runs iptables-save."""
    from kubectl_svcnet.collect import nodefilter

    text, _ = _filtered(
        s, cmd, nodefilter.nft_filter_command(cmd, only), timeout, only, " ".join(cmd),
        "not `nft list table` output the filter reads", plain=lambda: _nft_table(s, cmd, timeout),
        read=lambda result: _nft_text(s, cmd, result, s.compress),
    )  # fmt: skip
    return text


def _nothing_read(node: str, out: NodeDumps, s: _Session, have: set, runner: Runner) -> str:
    tools = [p for p in PROGRAMS if p not in ("gzip", "awk", "curl", "python3", "wget") and p in have]
    if not tools:
        msg = f"nothing could be read on {node}: none of iptables-save, iptables-nft-save, iptables-legacy-save, nft"
        msg += " found"
        if out.uid not in (None, "0") and not runner.sudo:
            msg += f" (connected as uid {out.uid}: connect as root or use sudo)"
        return msg
    why = "; ".join(s.failures[:3]) or "no iptables tables and no kube-proxy nftables table"
    msg = f"nothing could be read on {node}: {why}"
    if out.uid not in (None, "0") and not runner.sudo:
        msg += f" (connected as uid {out.uid}: reading rules needs root — connect as root or use sudo)"
    return msg
