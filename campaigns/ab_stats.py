"""A/B winner statistics: may a campaign's follow-up run pick a winner on its own?

Pure functions, no I/O and no third-party maths: the campaign flow hands in per-variant counts (sent,
converted — "converted" is whatever the campaign optimises, usually clicks) and gets back a `Decision`. A
winner is only named when every variant reached the minimum sample AND the difference is statistically
significant; anything less returns `winner=None` with a reason a marketer can read, and a person chooses.

Test used:
- two variants: the two-sided two-proportion z-test with the pooled standard error
  (z = (p1 - p2) / sqrt(p(1 - p)(1/n1 + 1/n2)), p = pooled rate);
- three to six variants: the best variant (highest rate) is tested against every other one, and each of
  those k - 1 tests must pass at alpha / (k - 1) (Bonferroni), so looking at more variants does not make a
  false winner more likely. The decision's p-value is the weakest (largest) of those comparisons.

A tie at the top, or no variance at all (everyone 0 % or everyone 100 %), is never a winner.
"""

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class VariantResult:
    """One variant's counts: how many were sent and how many converted (clicked, booked, ...)."""

    variant: str
    sent: int
    converted: int


@dataclass(frozen=True)
class Decision:
    """The outcome: `winner` is a variant name or None; `reason` is for people; `p_value` when a test ran."""

    winner: str | None
    reason: str
    p_value: float | None


def two_proportion_p_value(converted_a: int, sent_a: int, converted_b: int, sent_b: int) -> float | None:
    """Two-sided p-value of the pooled two-proportion z-test, or None when there is no variance.

    Uses erfc(|z| / sqrt 2), which equals 2 * (1 - NormalDist().cdf(|z|)) but keeps its precision for a
    large |z| (1 - cdf rounds to 0 long before erfc does).
    """
    z = two_proportion_z(converted_a, sent_a, converted_b, sent_b)
    if z is None:
        return None
    return math.erfc(abs(z) / math.sqrt(2))


def two_proportion_z(converted_a: int, sent_a: int, converted_b: int, sent_b: int) -> float | None:
    """z of rate A minus rate B with the pooled standard error; None when the pooled rate is 0 or 1."""
    if sent_a <= 0 or sent_b <= 0:
        raise ValueError("both groups need at least one message sent")
    pooled = (converted_a + converted_b) / (sent_a + sent_b)
    variance = pooled * (1 - pooled) * (1 / sent_a + 1 / sent_b)
    if variance <= 0:
        return None
    return (converted_a / sent_a - converted_b / sent_b) / math.sqrt(variance)


def choose_winner(
    results: list[VariantResult], *, min_sample: int, alpha: float = 0.05, metric: str = "click rate"
) -> Decision:
    """Pick the significantly best variant, or say why not.

    `min_sample` is per variant (a variant with fewer sends blocks the decision); `metric` only names the rate
    in the reason ("click rate", "booking rate"). Inconsistent input (converted > sent, negative counts,
    duplicate variant names, alpha outside (0, 1)) is a programming error and raises ValueError.
    """
    _validate(results, alpha)
    if len(results) < 2:
        return Decision(None, "An A/B test needs at least two variants; nothing to compare.", None)

    needed = max(min_sample, 1)
    short = [r for r in results if r.sent < needed]
    if short:
        names = ", ".join(f"{r.variant} ({r.sent} sent)" for r in short)
        return Decision(
            None,
            f"Not enough data yet: every variant needs at least {needed} sent; {names} "
            f"{'is' if len(short) == 1 else 'are'} below that. Wait longer or choose a winner by hand.",
            None,
        )

    ranked = sorted(results, key=lambda r: r.converted / r.sent, reverse=True)
    best = ranked[0]
    best_rate = best.converted / best.sent
    tied = [r for r in ranked if r.converted * best.sent == best.converted * r.sent]
    if len(tied) > 1:
        names = " and ".join(r.variant for r in tied)
        what = "no variance to test" if best_rate in (0.0, 1.0) else "a tie"
        return Decision(
            None,
            f"{names} have the same {metric} ({_pct(best_rate)}): {what}, so no winner. Choose one by hand.",
            None,
        )

    comparisons = len(results) - 1
    threshold = alpha / comparisons
    worst_p = 0.0
    runner_up = ranked[1]
    for other in ranked[1:]:
        p = two_proportion_p_value(best.converted, best.sent, other.converted, other.sent)
        if p is None:  # unreachable once ties are excluded, kept so a zero variance can never name a winner
            return Decision(
                None, f"No variance in {metric} between {best.variant} and {other.variant}.", None
            )
        if p >= worst_p:
            worst_p, runner_up = p, other

    comparison = (
        f"{best.variant}'s {metric} {_pct(best_rate)} vs {runner_up.variant}'s "
        f"{_pct(runner_up.converted / runner_up.sent)}, {_p(worst_p)}"
    )
    bound = _num(threshold) + (
        f" ({_num(alpha)} split over {comparisons} comparisons)" if comparisons > 1 else ""
    )
    if worst_p < threshold:
        return Decision(best.variant, f"{comparison} < {bound}: {best.variant} wins.", worst_p)
    return Decision(
        None,
        f"{comparison} ≥ {bound}: the difference is not significant. Wait for more data or choose by hand.",
        worst_p,
    )


def _validate(results: list[VariantResult], alpha: float) -> None:
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be between 0 and 1, got {alpha}")
    names = [r.variant for r in results]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate variant names: {names}")
    for r in results:
        if r.sent < 0 or r.converted < 0 or r.converted > r.sent:
            raise ValueError(f"variant {r.variant}: need 0 <= converted <= sent, got {r.converted}/{r.sent}")


def _pct(rate: float) -> str:
    return f"{rate * 100:.1f}%"


def _num(value: float) -> str:
    return f"{value:.4g}"


def _p(p: float) -> str:
    if p < 0.001:
        return "p < 0.001" if p >= 1e-12 else "p ≈ 0"
    return f"p = {p:.3g}"
