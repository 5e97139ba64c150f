"""The statistics behind the booking insights, from the standard library only (no SciPy in the lock).

- `compare`: are two proportions different? A two-sided **two-proportion z-test** (pooled) when every
  expected cell count under the null hypothesis is at least 5, else **Fisher's exact test** (two-sided:
  the tables at most as likely as the one seen). Below `MIN_SAMPLE` in either group it is not tested at all.
- `holm`: the Holm–Bonferroni step-down adjustment, so a report that runs a dozen tests a week does not
  call a change real once a fortnight by chance alone: adjusted p-values are compared with `ALPHA`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

ALPHA = 0.05  # family-wise: over all the tests of one weekly section, after the Holm adjustment
MIN_SAMPLE = 30  # appointments (or reminders) in each group compared; fewer: not tested, not reported
MIN_EXPECTED = 5  # the z-test's normal approximation needs this many expected in every cell; else Fisher

Test = Literal["z", "fisher"]


@dataclass(frozen=True)
class Proportion:
    hits: int
    total: int

    @property
    def rate(self) -> float | None:
        return self.hits / self.total if self.total else None

    def __add__(self, other: Proportion) -> Proportion:
        return Proportion(self.hits + other.hits, self.total + other.total)

    def describe(self) -> str:
        """`40.0 % (20 of 50)`."""
        return f"{percent(self.rate)} ({self.hits:,} of {self.total:,})"


def percent(rate: float | None) -> str:
    return "—" if rate is None else f"{rate * 100:.1f} %"


@dataclass(frozen=True)
class Result:
    test: Test | None  # None: a group below MIN_SAMPLE, not tested
    p: float | None


def z_test(a: Proportion, b: Proportion) -> float:
    """Two-sided p-value of the pooled two-proportion z-test."""
    pooled = (a.hits + b.hits) / (a.total + b.total)
    se = math.sqrt(pooled * (1 - pooled) * (1 / a.total + 1 / b.total))
    if se == 0:
        return 1.0
    z = ((a.rate or 0.0) - (b.rate or 0.0)) / se
    return math.erfc(abs(z) / math.sqrt(2))


def _log_comb(n: int, k: int) -> float:
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)


def fisher_exact(a: Proportion, b: Proportion) -> float:
    """Two-sided p-value of Fisher's exact test on the 2×2 table (hits, misses) × (a, b)."""
    hits, n, total = a.hits + b.hits, a.total, a.total + b.total
    low, high = max(0, hits - b.total), min(hits, n)

    def log_p(k: int) -> float:  # hypergeometric: k of the hits in group a
        return _log_comb(n, k) + _log_comb(total - n, hits - k) - _log_comb(total, hits)

    seen = log_p(a.hits)
    tolerance = 1e-7  # relative: tables as likely as the one seen, up to rounding, count
    p = sum(math.exp(lp) for lp in map(log_p, range(low, high + 1)) if lp <= seen + tolerance)
    return min(1.0, p)


def compare(a: Proportion, b: Proportion, min_sample: int = MIN_SAMPLE) -> Result:
    if a.total < min_sample or b.total < min_sample:
        return Result(None, None)
    pooled = (a.hits + b.hits) / (a.total + b.total)
    expected = [n * q for n in (a.total, b.total) for q in (pooled, 1 - pooled)]
    if min(expected) >= MIN_EXPECTED:
        return Result("z", z_test(a, b))
    return Result("fisher", fisher_exact(a, b))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm–Bonferroni adjusted p-values (monotone, capped at 1), in the order given."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted = [1.0] * len(p_values)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted


def describe_p(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


TEST_NAMES: dict[Test, str] = {"z": "two-proportion z-test", "fisher": "Fisher's exact test"}
