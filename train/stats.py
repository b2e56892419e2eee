"""Statistics over seeds: mean, sample standard deviation, and paired t-intervals.

Methods trained at the same seed share the low-shot subset (and the seeded initialisation of the
parts they share), so two methods are compared by their per-seed differences, not by two
independent means: the interval is ``mean(d) +- t_{0.975, n-1} * sd(d) / sqrt(n)``.
The t quantile is computed exactly for integer degrees of freedom (no scipy needed).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Summary:
    mean: float
    std: float | None  # sample standard deviation (ddof=1); None for one value
    n: int

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class PairedInterval:
    mean: float  # mean of the per-seed differences
    low: float | None  # the 95% t-interval; None with fewer than 2 seeds
    high: float | None
    n: int
    seeds: tuple[int, ...]

    @property
    def excludes_zero(self) -> bool | None:
        if self.low is None or self.high is None:
            return None
        return self.low > 0 or self.high < 0

    def as_dict(self) -> dict:
        return {**asdict(self), "seeds": list(self.seeds), "excludes_zero": self.excludes_zero}


def summarize(values: list[float]) -> Summary:
    n = len(values)
    if n == 0:
        raise ValueError("no values to summarize")
    mean = sum(values) / n
    if n == 1:
        return Summary(mean, None, 1)
    variance = sum((v - mean) ** 2 for v in values) / (n - 1)
    return Summary(mean, math.sqrt(variance), n)


def paired_interval(
    first: dict[int, float], second: dict[int, float], confidence: float = 0.95
) -> PairedInterval | None:
    """``first - second`` over the seeds both have; None when they share no seed."""
    seeds = tuple(sorted(set(first) & set(second)))
    if not seeds:
        return None
    differences = [first[s] - second[s] for s in seeds]
    summary = summarize(differences)
    if summary.n < 2:
        return PairedInterval(summary.mean, None, None, 1, seeds)
    half = t_quantile(0.5 + confidence / 2, summary.n - 1) * summary.std / math.sqrt(summary.n)
    return PairedInterval(summary.mean, summary.mean - half, summary.mean + half, summary.n, seeds)


def t_cdf(t: float, df: int) -> float:
    """P(T <= t) for Student's t with integer ``df`` (Abramowitz & Stegun 26.7.3-4)."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    theta = math.atan(t / math.sqrt(df))
    cos2 = math.cos(theta) ** 2
    if df % 2 == 1:  # A = 2/pi (theta + sin cos (1 + 2/3 cos^2 + 2*4/(3*5) cos^4 + ...))
        term, total = 1.0, 1.0 if df > 1 else 0.0
        for k in range(1, (df - 1) // 2):
            term *= (2 * k) / (2 * k + 1) * cos2
            total += term
        inside = theta + (math.sin(theta) * math.cos(theta) * total if df > 1 else 0.0)
        central = 2 / math.pi * inside
    else:  # A = sin (1 + 1/2 cos^2 + 1*3/(2*4) cos^4 + ...)
        term, total = 1.0, 1.0
        for k in range(1, df // 2):
            term *= (2 * k - 1) / (2 * k) * cos2
            total += term
        central = math.sin(theta) * total
    return 0.5 + central / 2  # central = P(|T| <= |t|) with the sign of t


def t_quantile(p: float, df: int) -> float:
    """The ``p`` quantile of Student's t with integer ``df`` (bisection on :func:`t_cdf`)."""
    if not 0 < p < 1:
        raise ValueError(f"p must lie in (0, 1), got {p}")
    low, high = -1.0, 1.0
    while t_cdf(low, df) > p:
        low *= 2
    while t_cdf(high, df) < p:
        high *= 2
    for _ in range(200):
        middle = (low + high) / 2
        if t_cdf(middle, df) < p:
            low = middle
        else:
            high = middle
        if high - low < 1e-12:
            break
    return (low + high) / 2
