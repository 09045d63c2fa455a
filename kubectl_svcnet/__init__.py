"""kubectl-svcnet: where does SERVICE-IP:PORT go? Read from every node's kube-proxy rules."""

__version__ = "0.1.0"
