"""A kube-proxy rule writer for tests: what kube-proxy would write for one node's services.

    from tests.kpwriter import write_iptables, write_nft, load_into_netns, save_from_netns

Input: a dict in the schema of the fixtures' expected.json (tests/fixtures/kube-proxy/README.md):
``node_name``, ``pod_cidr`` (the local-traffic detector), ``services[]`` with ``frontends[]`` and
``endpoints[]`` (``local`` = on this node). Node context the fixtures don't carry (``node_ip``, ...)
is passed as keyword options or in a ``kube_proxy`` dict in the spec.

- `iptables.py`: the v1.29+ iptables proxier (``write_iptables``; `REAL_NODE` options for what a real
  node's kube-proxy writes; ``iptables_setup_text`` for the canary chains and jump rules;
  ``sort_iptables_rules``, the order kube-proxy's unit tests compare in).
- `nft.py`: the nftables proxier (``write_nft``), shape of the nftables fixtures.
- `netns.py`: loading text into a throw-away network namespace and saving it back (root only); the
  ``nfacct`` match, missing from this machine's kernel, is stripped before loading.
"""

from __future__ import annotations

from .iptables import (
    REAL_NODE,
    iptables_setup_text,
    parse_restore,
    sort_iptables_rules,
    split_syncs,
    write_iptables,
)
from .netns import (
    diff_saves,
    lab_available,
    load_into_netns,
    load_iptables_node,
    netns,
    save_from_netns,
    strip_nfacct,
)
from .nft import normalize_nft_list, transaction_lines, write_nft

__all__ = [
    "REAL_NODE",
    "diff_saves",
    "iptables_setup_text",
    "lab_available",
    "load_into_netns",
    "load_iptables_node",
    "netns",
    "normalize_nft_list",
    "parse_restore",
    "save_from_netns",
    "sort_iptables_rules",
    "split_syncs",
    "strip_nfacct",
    "transaction_lines",
    "write_iptables",
    "write_nft",
]
