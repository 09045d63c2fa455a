"""A lab that checks kubectl-svcnet's answers against real packets (see lab.py for the topology).

Needs root, iproute2, iptables-nft and nft; tests using it are marked `lab`.
"""

from __future__ import annotations

from tests.lab.lab import Lab, LabSpec, ProbeResult, ProbeTarget, lab_skip_reason, list_netns, reap_stale

__all__ = ["Lab", "LabSpec", "ProbeResult", "ProbeTarget", "lab_skip_reason", "list_netns", "reap_stale"]
