"""`trace` over SSH in IPVS mode: the node sends only the ipvsadm-save and ipset lines one Service needs.

A 10,000-service node in IPVS mode lists 110,000 lines in `ipvsadm-save -n` and every ClusterIP in
`ipset list`; a trace reads a few of them. The node pipes each of the two through one constant awk
program (POSIX awk: mawk, gawk, busybox awk, BWK awk):

    sh -c FILTER_SCRIPT sh AWK_PROGRAM COUNT WORD... ipvsadm-save -n

The words are the traced Service's virtual servers as `read_node` narrows them for a trace
(`dataplane.ipvs_wanted` -> `dataplane.ipvs.Wanted`, from the API's objects): ``IP,PORT`` for each of
its addresses (ClusterIPs, external IPs, load-balancer IPs) and ports, ``PORT`` for each node port. Each
is checked here first (`words_for`: canonical IPv4/IPv6 text, ports 1-65535), and no shell text is ever
built from them. What the program keeps, line by line, is what the client would read anyway:

- ipvsadm-save: every line but the ``-A``/``-a`` lines `Wanted.skips` skips — a TCP/UDP/SCTP virtual
  server (``-t``/``-u``/``--sctp-service`` ...) on a canonical dotted quad, neither on one of the
  Service's address:port pairs nor on one of its node ports. Firewall-mark (``-f``) lines, IPv6
  virtual servers (``[addr]:port``: the client reads them all) and lines of any other shape stay.
- ipset list: every line but members. A member stays when the IPVS resolver (`resolve_ipvs`) could look
  it up for a virtual server the client reads and that can become the Service's frontend: in the sets
  it matches by address and port (`IP_PORT_SETS`), the Service's address:port pairs, any address with one
  of its node ports, and IPv6 entries on any of its ports (the client reads every IPv6 virtual server,
  and one on the Service's port can join its node-port frontend); in the node-port sets (`PORT_SETS`),
  its ports and node ports; `KUBE-LOOP-BACK` whole (kube-proxy puts only this node's endpoints there, so
  it grows with the node's pods, not with the cluster). When no set says what a frontend is
  (`TYPE_SETS`: never on a node kube-proxy set up), the resolver guesses, from `KUBE-IPVS-IPS`, for
  every virtual server in no set, and says so: then every member of the sets it reads stays. Also kept:
  the first member of every set (the resolver counts a set with members as kube-proxy's IPVS mode), and
  any member the program cannot read exactly as `dataplane.ipvs._split_entry` does (an unknown set type,
  an entry in another form) — those may be errors, which must stay errors.
- in both: every line holding a marker `proxymode.scan_dump` looks for, the first ``-A -t/-u/-f`` line
  (its "IPVS virtual servers" marker), and every line up to the first non-blank one. So the format the
  client detects, the proxy-mode markers and the first error a damaged dump raises are the same.

Output that is not plain ipvsadm-save / ipset list output (another first line, a byte outside printable
ASCII, a line that looks like another dump format's, no newline at the end) is sent whole, unchanged.
Else the node prints ``#svcnet-filter 1 <lines> 0``, ``<line number>TAB<line>`` for each kept line and
``#svcnet-end``, and the client puts the lines back on their own numbers with `nodefilter.rebuild`, so
every hop's ``IPVS:LINE`` (and ipset line) is the node's own. The lines left out come back empty, and an
empty line ends a set's members in `ipset list`: so a member that follows left-out ones comes with a
``Members:`` on the line before it (a left-out member's line; when only one member was left out before
it, that member itself), and is read as a member again. `tests/test_ipvsfilter.py` checks, with every awk it finds,
that each Service's trace reads the same from the rebuilt text as from the whole.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Optional, Sequence, Tuple

from kubectl_svcnet import proxymode
from kubectl_svcnet.collect.nodefilter import AWK_FAILED, awk_one_line, is_filtered, rebuild
from kubectl_svcnet.dataplane.ipvs import KNOWN_SETS, PROTOCOLS, Wanted

__all__ = ["AWK_FAILED", "AWK_PROGRAM", "FILTER_SCRIPT", "filter_command", "is_filtered", "rebuild", "words_for"]

EOF = "#svcnet-eof"  # appended after the command's output: the program sees whether it ended with a newline

# Runs the command "$@" into awk with the words as one -v value; exits with the command's status when it
# failed (127: not there, as without the filter), else AWK_FAILED when awk failed, else 0. After the
# command's output, a newline and EOF: the output ended with a newline (or was empty) when the line before
# EOF is empty, so a cut last line is sent back as it came. LC_ALL=C: bytes, whatever the node's locale.
FILTER_SCRIPT = (
    'p=$1; n=$2; shift 2; w=; while [ "$n" -gt 0 ]; do w="$w $1"; n=$((n - 1)); shift; done; exec 3>&1;'
    f' s=$( {{ {{ "$@"; echo "$?" >&4; echo; echo "{EOF}"; }} | LC_ALL=C awk -v "w=$w" "$p" >&3; }} 4>&1 );'
    ' a=$?; if [ "${s:-1}" != 0 ]; then exit "${s:-1}"; fi;'
    f' if [ "$a" != 0 ]; then echo "awk exited $a" >&2; exit {AWK_FAILED}; fi; exit 0'
)

# How the IPVS resolver (dataplane/ipvs.py) reads each set, by its IPv4 name (kube_set_name): tests check
# these against its source.
IP_PORT_SETS = (
    "KUBE-CLUSTER-IP", "KUBE-EXTERNAL-IP", "KUBE-EXTERNAL-IP-LOCAL", "KUBE-LOAD-BALANCER",
    "KUBE-LOAD-BALANCER-LOCAL", "KUBE-LOAD-BALANCER-FW", "KUBE-LOAD-BALANCER-SOURCE-IP",
    "KUBE-LOAD-BALANCER-SOURCE-CIDR",
)  # fmt: skip
PORT_SETS = (
    "KUBE-NODE-PORT-TCP", "KUBE-NODE-PORT-UDP", "KUBE-NODE-PORT-SCTP-HASH", "KUBE-NODE-PORT-LOCAL-TCP",
    "KUBE-NODE-PORT-LOCAL-UDP", "KUBE-NODE-PORT-LOCAL-SCTP-HASH",
)  # fmt: skip
WHOLE_SETS = ("KUBE-LOOP-BACK",)
GUESS_SETS = ("KUBE-IPVS-IPS",)  # read only without any of TYPE_SETS
TYPE_SETS = ("KUBE-CLUSTER-IP", "KUBE-NODE-PORT-TCP", "KUBE-LOAD-BALANCER")  # _classify's have_sets
# The set types whose entries the program reads (as _split_entry does); members of others stay.
SET_TYPES = ("hash:ip", "hash:ip,port", "hash:ip,port,ip", "hash:ip,port,net", "bitmap:port")
PORT_PROTOCOLS = ("tcp", "udp", "sctp", "udplite", "icmp", "icmpv6")  # ipvs._PROTO_PORT


# The marker lists proxymode.scan_dump searches whole dumps for (a test checks it uses no others).
MARKER_GROUPS = ("IPTABLES_MODE", "IPVS_MODE", "USERSPACE_MODE", "NFTABLES_MODE", "KUBE_PROXY_ANY", "CILIUM", "CALICO",
                 "KUBE_ROUTER")  # fmt: skip


def _needles() -> str:
    """An ERE matching every line that holds one of proxymode.scan_dump's markers."""
    out = []
    for group in MARKER_GROUPS:
        for needle in getattr(proxymode, group):
            text = needle[1:] if needle.startswith("\n") else needle
            if not re.fullmatch(r'[A-Za-z0-9 _:"-]+', text):
                raise ValueError(f"marker {needle!r} needs escaping in an awk regex")
            out.append(("^" if needle.startswith("\n") else "") + text)
    return "|".join(sorted(set(out)))


NEEDLES = _needles()
# Every marker holds one of these: a line without any is matched against NEEDLES no further.
NEEDLE_HINTS = ('\\"', "KUBE-", "kube-", "CILIUM_", "cali-")  # ('\\"': a quote, in an awk string)
_OCTET = "(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"  # ipvs._OCTET, without interval expressions
IPV4_ERE = "^" + "\\.".join([_OCTET] * 4) + "$"


def _split(count: str, array: str, words: Sequence[str]) -> str:
    """Awk: `array`[1..`count`] = `words`, in order."""
    return f'{count} = split("{" ".join(words)}", {array}, " ")'


# The program. Arrays: L (every line), keep[n] (lines to send), A[ip, port] (the Service's IPv4 address
# pairs), P (its ports), N (its node ports), cls[set] (how the resolver reads a set), present[set] (the
# sets listed), mem[n] (member lines), ips (members of the sets the resolver reads that are kept only
# when it guesses frontend types), gap[n] (a "Members:" sent on a left-out member's line). mode: 1
# ipvsadm-save, 2 ipset list; bad: the first line that is not understood. The last two lines are the
# script's: "" (when the output ended with a newline) and EOF.
_AWK_SOURCE = (
    """
function ip4(s) {
    return s ~ /"""
    + IPV4_ERE
    + """/
}
function hex(s) {
    return s ~ /^[0-9A-Fa-f][0-9A-Fa-f]?[0-9A-Fa-f]?[0-9A-Fa-f]?$/
}
function ip6(s,    i, hi, lo, nh, nl, k, g) {
    if (s !~ /^[0-9A-Fa-f:]+$/) return 0
    i = index(s, "::")
    hi = s
    lo = ""
    if (i) { hi = substr(s, 1, i - 1); lo = substr(s, i + 2) }
    if (index(lo, "::")) return 0
    nh = 0
    nl = 0
    if (hi != "") nh = split(hi, g, ":")
    for (k = 1; k <= nh; k++) if (!hex(g[k])) return 0
    if (lo != "") nl = split(lo, g, ":")
    for (k = 1; k <= nl; k++) if (!hex(g[k])) return 0
    if (i) return nh + nl <= 7
    return nh == 8
}
function ip(s) {
    return ip4(s) || ip6(s)
}
function dec(s) {
    return s ~ /^(0|[1-9][0-9]?[0-9]?[0-9]?[0-9]?)$/
}
function net(s,    i, b, a) {
    i = index(s, "/")
    if (!i) return ip(s)
    a = substr(s, 1, i - 1)
    b = substr(s, i + 1)
    if (b !~ /^(0|[1-9][0-9]?[0-9]?)$/) return 0
    if (ip4(a)) return b + 0 <= 32
    return ip6(a) && b + 0 <= 128
}
function port(s,    i, p) {
    i = index(s, ":")
    p = substr(s, 1, i - 1)
    if (i && !(p in proto)) return ""
    s = substr(s, i + 1)
    if (dec(s)) return s
    return ""
}
function entry(t, e,    n, x) {
    E1 = ""
    E2 = ""
    if (t == "bitmap:port") {
        if (!dec(e) || e + 0 > 65535) return 0
        E2 = e
        return 1
    }
    n = split(e, x, ",")
    if (n < 1 || !ip(x[1])) return 0
    E1 = x[1]
    if (t == "hash:ip") return n == 1
    if (n < 2) return 0
    E2 = port(x[2])
    if (E2 == "") return 0
    if (t == "hash:ip,port") return n == 2
    if (t == "hash:ip,port,ip") return n == 3 && ip(x[3])
    return n == 3 && net(x[3])
}
function want(c) {
    if (c == "whole") return 1
    if (E2 == "") return 0
    if (c == "ports") return (E2 in N) || (E2 in P)
    if (c != "ipport" || E1 == "") return 0
    if (E2 in N) return 1
    if (ip4(E1)) return ((E1, E2) in A)
    return (E2 in P)
}
function kube(s,    v, i) {
    if (substr(s, 1, 7) != "KUBE-6-") return s
    v = "KUBE-" substr(s, 8)
    if (v in known) return v
    for (i = 1; i <= nks; i++) if (index(KS_[i], v) == 1) return KS_[i]
    return v
}
function marked() {
    return ("""
    + " || ".join(f'index($0, "{h}")' for h in NEEDLE_HINTS)
    + """) && $0 ~ /"""
    + NEEDLES
    + """/
}
function mark(n, c,    i) {
    for (i = 1; i <= n; i++) cls[W_[i]] = c
}
BEGIN {
    nw = split(w, a, " ")
    for (i = 1; i <= nw; i++) {
        j = index(a[i], ",")
        if (!j) N[a[i]] = 1
        else {
            h = substr(a[i], 1, j - 1)
            p = substr(a[i], j + 1)
            P[p] = 1
            if (ip4(h)) A[h, p] = 1
        }
    }
    """
    + _split("nks", "KS_", KNOWN_SETS)
    + """
    for (i = 1; i <= nks; i++) known[KS_[i]] = 1
    """
    + "".join(
        _split("n", "W_", words) + f"\n    {then}\n    "
        for words, then in (
            (sorted(PROTOCOLS), "for (i = 1; i <= n; i++) flag[W_[i]] = 1"),
            (PORT_PROTOCOLS, "for (i = 1; i <= n; i++) proto[W_[i]] = 1"),
            (SET_TYPES, "for (i = 1; i <= n; i++) typ[W_[i]] = 1"),
            (IP_PORT_SETS, 'mark(n, "ipport")'),
            (PORT_SETS, 'mark(n, "ports")'),
            (WHOLE_SETS, 'mark(n, "whole")'),
            (GUESS_SETS, 'mark(n, "guess")'),
        )
    )
    + _split("ntypes", "TS_", TYPE_SETS)
    + """
}
{
    L[NR] = $0
    if (bad) next
    if ($0 ~ /[^ -~]/ || $0 ~ /^(#|[*]|table )/) { bad = NR; next }
    s = $0
    if (substr(s, 1, 1) == " ") sub(/^ +/, "", s)
    if (substr(s, length(s), 1) == " ") sub(/ +$/, "", s)
    if (s == "") { keep[NR] = 1; inm = 0; next }
    c = substr(s, 1, 3)
    if (!mode) {
        keep[NR] = 1
        if (substr(s, 1, 6) == "Name: ") mode = 2
        else if (c == "-A " || c == "-a ") mode = 1
        else { bad = NR; next }
    }
    if (mode == 1) {
        if (c != "-A " && c != "-a ") { bad = NR; next }
        if (!vs && $0 ~ /^-A -[tuf] /) { vs = 1; keep[NR] = 1; next }
        if (pl && substr(s, 3, pl) == pp) {
            if (pk || marked()) keep[NR] = 1
            next
        }
        x = $3
        j = index(x, ":")
        h = substr(x, 1, j - 1)
        p = substr(x, j + 1)
        pk = NF < 3 || !($2 in flag) || !j || index(p, ":") || (p in N) || ((h, p) in A)
        if (!pk) {
            if (!(h in v4)) v4[h] = ip4(h)
            pk = !v4[h]
        }
        pl = 0
        if (NF >= 3) {
            pp = " " $2 " " $3 " "
            pl = length(pp)
        }
        if (pk || marked()) keep[NR] = 1
        next
    }
    if (substr(s, 1, 6) == "Name: ") {
        K = substr(s, 7)
        sub(/^ +/, "", K)
        K = kube(K)
        present[K] = 1
        T = ""
        inm = 0
        fm = 1
        keep[NR] = 1
        next
    }
    if (!inm) {
        keep[NR] = 1
        j = index(s, ":")
        k = substr(s, 1, j - 1)
        if (j && k == "Type") {
            T = substr(s, j + 1)
            sub(/^ +/, "", T)
        } else if (j && k == "Members") inm = 1
        next
    }
    mem[NR] = 1
    if (fm || T == "" || marked()) { fm = 0; keep[NR] = 1; next }
    c = ""
    if (K in cls) c = cls[K]
    if (T ~ /^hash:/ || substr(T, 1, 11) == "bitmap:port") {
        if (!(T in typ) || !entry(T, $1) || want(c)) keep[NR] = 1
        else if (c != "") ips[++ni] = NR
    } else if (c != "") keep[NR] = 1
}
END {
    n = NR - 1
    nl = 0
    if (n > 0 && L[n] == "") { n--; nl = 1 }
    if (L[NR] != EOF_ || (bad && bad <= n) || !nl || !mode || L[1] == "") {
        for (i = 1; i <= n; i++) {
            printf "%s", L[i]
            if (i < n || nl) printf "\\n"
        }
        exit
    }
    have = 0
    for (i = 1; i <= ntypes; i++) if (TS_[i] in present) have = 1
    if (!have) for (i = 1; i <= ni; i++) keep[ips[i]] = 1
    for (i = 3; i <= n; i++) if ((i in keep) && (i in mem) && !((i - 1) in keep)) {
        if ((i - 2) in keep) keep[i - 1] = 1
        else gap[i - 1] = 1
    }
    print "#svcnet-filter 1 " n " 0"
    for (i = 1; i <= n; i++) {
        if (i in keep) print i "\\t" L[i]
        else if (i in gap) print i "\\tMembers:"
    }
    print "#svcnet-end"
}
"""
).replace("EOF_", f'"{EOF}"')
AWK_PROGRAM = awk_one_line(_AWK_SOURCE)

_PAIR = re.compile(r"^([0-9a-f.:]+),([0-9]+)$")
_PORT = re.compile(r"^[0-9]+$")


def _canonical_ip(text: object) -> bool:
    """An IPv4 or IPv6 address as `ipaddress` prints it (no zone, no other spelling)."""
    if not isinstance(text, str) or not text or not set(text) <= set("0123456789abcdef.:"):
        return False
    try:
        return str(ipaddress.ip_address(text)) == text
    except ValueError:
        return False


def _port(text: object) -> bool:
    """A port as an integer 1..65535 prints it."""
    return isinstance(text, str) and bool(_PORT.match(text)) and str(int(text)) == text and 1 <= int(text) <= 65535


def valid_word(word: str) -> bool:
    """``IP,PORT`` (canonical address, port 1..65535) or ``PORT``: the only words that reach the node."""
    m = _PAIR.match(word)
    if m:
        return _canonical_ip(m.group(1)) and _port(m.group(2))
    return _port(word)


def words_for(wanted: Wanted) -> Optional[Tuple[str, ...]]:
    """The filter's words for a trace's `Wanted` (address pairs, then node ports, each sorted); None when
    any address or port is not one (then the dumps are read whole)."""
    pairs, ports = set(), set()
    for ip, port in wanted.addresses:
        if not (_canonical_ip(ip) and _port(port)):
            return None
        pairs.add(f"{ip},{port}")
    for port in wanted.node_ports:
        if not _port(port):
            return None
        ports.add(port)
    return tuple(sorted(pairs)) + tuple(sorted(ports, key=int))


def filter_command(command: Sequence[str], words: Sequence[str]) -> Tuple[str, ...]:
    """The argv that runs `command` (ipvsadm-save -n, ipset list) through the filter for `words`."""
    bad = [w for w in words if not valid_word(w)]
    if bad:
        raise ValueError(f"not an address,port or a port: {bad[0]!r}")
    return ("sh", "-c", FILTER_SCRIPT, "sh", AWK_PROGRAM, str(len(words)), *words, *command)
