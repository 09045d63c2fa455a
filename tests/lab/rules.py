"""A node's kube-proxy rules: recognise the dump's format and load it into a namespace."""

from __future__ import annotations

import re
from typing import Optional

from tests.lab.host import LocalHost

IPTABLES = "iptables"
NFTABLES = "nftables"

# This kernel has no `nfacct` match (xt_nfacct / CONFIG_NETFILTER_XT_MATCH_NFACCT), so iptables-restore
# rejects modern kube-proxy's counter rules (`-m nfacct --nfacct-name  localhost_nps_accepted_pkts`,
# `ct_state_invalid_dropped_pkts`). The match only counts packets and never changes a verdict, so the
# lab strips it before loading. iptables-save prints two spaces after --nfacct-name.
_NFACCT = re.compile(r" -m nfacct --nfacct-name +\S+")


def detect_format(text: str) -> str:
    for line in text.splitlines():
        s = line.strip()
        if s.startswith("table ") and s.endswith("{"):
            return NFTABLES
        if s.startswith("*") or s.startswith(":") or s.startswith("-A "):
            return IPTABLES
    raise ValueError("neither iptables-save nor nft list ruleset text")


def strip_nfacct(text: str) -> str:
    return _NFACCT.sub("", text)


def iptables_nft_restore(host: LocalHost) -> Optional[str]:
    """The iptables-restore that writes nf_tables rules (the iptables-nft backend), or None."""
    for prog in ("iptables-nft-restore", "iptables-restore"):
        if not host.has(prog):
            continue
        out = host.run([prog, "--version"], check=False)
        if "nf_tables" in (out.stdout + out.stderr):
            return prog
    return None


def load_rules(host: LocalHost, netns: str, text: str) -> str:
    """Load a dump into `netns`; returns its format."""
    fmt = detect_format(text)
    if fmt == IPTABLES:
        prog = iptables_nft_restore(host)
        if prog is None:
            raise RuntimeError("no iptables-restore with the nf_tables backend")
        host.run([prog], netns=netns, input=strip_nfacct(text))
    else:
        host.run(["nft", "-f", "-"], netns=netns, input=text)
    return fmt
