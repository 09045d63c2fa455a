"""Does an observed spread of connections fit the shares the tool reported?

Each backend's count is Binomial(n, p) under the tool's claim. An exact two-sided binomial test per
backend, Bonferroni-corrected, at a strict family alpha (default 1e-6): a correct claim fails about
once in a million runs, while a wrong share is still caught (with n=300, 1/3 vs 1/2 gives p ~ 1e-9).
"""

from __future__ import annotations

import math
from typing import Dict, List, Mapping

ALPHA = 1e-6


def _log_pmf(k: int, n: int, p: float) -> float:
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1) + k * math.log(p) + (n - k) * math.log1p(-p)


def binom_two_sided_p(k: int, n: int, p: float) -> float:
    """Exact two-sided p-value: P(X such that pmf(X) <= pmf(k)), X ~ Binomial(n, p)."""
    if n <= 0:
        return 1.0
    if p <= 0.0:
        return 1.0 if k == 0 else 0.0
    if p >= 1.0:
        return 1.0 if k == n else 0.0
    ref = _log_pmf(k, n, p)
    total = 0.0
    for x in range(n + 1):
        lp = _log_pmf(x, n, p)
        if lp <= ref + 1e-9:
            total += math.exp(lp)
    return min(1.0, total)


def spread_problems(counts: Mapping[str, int], shares: Mapping[str, float], alpha: float = ALPHA) -> List[str]:
    """Backends whose count does not fit its share (empty list: fits). `counts` may only name keys
    of `shares` (anything else is a separate failure the caller reports)."""
    n = sum(counts.get(k, 0) for k in shares)
    if n == 0 or not shares:
        return []
    problems = []
    total = sum(shares.values())
    if abs(total - 1.0) > 1e-3:
        problems.append(f"reported shares sum to {total:.4f}, not 1")
    per = alpha / len(shares)
    for key, share in sorted(shares.items()):
        k = counts.get(key, 0)
        pv = binom_two_sided_p(k, n, share)
        if pv < per:
            problems.append(f"{key}: {k}/{n} connections, reported share {share:.4f} (p-value {pv:.2g} < {per:.2g})")
    return problems


def shares_by_backend(backends: List[Dict]) -> Dict[str, float]:
    out: Dict[str, float] = {}
    for b in backends:
        key = f"{b['ip']}:{int(b['port'])}"
        out[key] = out.get(key, 0.0) + float(b["probability"])
    return out
