"""A/B winner statistics on cases whose answers are known: values worked by hand (pooled two-proportion
z-test), the minimum-sample rule, ties and zero variance, and Bonferroni for more than two variants."""

from __future__ import annotations

import math
from statistics import NormalDist

import pytest
from hypothesis import given
from hypothesis import strategies as st

from campaigns.ab_stats import (
    Decision,
    VariantResult,
    choose_winner,
    two_proportion_p_value,
    two_proportion_z,
)


def v(name: str, sent: int, converted: int) -> VariantResult:
    return VariantResult(variant=name, sent=sent, converted=converted)


# --- the test statistic against hand calculations ----------------------------------------------------


def test_textbook_case_200_of_1000_vs_250_of_1000() -> None:
    # By hand: pooled p = 450/2000 = 0.225; SE = sqrt(0.225 * 0.775 * (1/1000 + 1/1000)) = 0.0186748;
    # z = (0.20 - 0.25) / 0.0186748 = -2.6774; two-sided p = 2 * (1 - Phi(2.6774)) = 0.00742.
    z = two_proportion_z(200, 1000, 250, 1000)
    assert z == pytest.approx(-2.6774, abs=1e-4)
    assert two_proportion_p_value(200, 1000, 250, 1000) == pytest.approx(0.00742, abs=2e-5)


def test_unequal_group_sizes_by_hand() -> None:
    # 30/300 (10%) vs 60/400 (15%): pooled 90/700 = 0.128571; SE = sqrt(0.128571 * 0.871429 * (1/300 + 1/400))
    # = 0.025567; z = -0.05 / 0.025567 = -1.9557; p = 0.0505: just not significant at 5 %.
    assert two_proportion_z(30, 300, 60, 400) == pytest.approx(-1.9557, abs=1e-3)
    assert two_proportion_p_value(30, 300, 60, 400) == pytest.approx(0.0505, abs=2e-4)
    decision = choose_winner([v("A", 300, 30), v("B", 400, 60)], min_sample=100)
    assert decision.winner is None and decision.p_value == pytest.approx(0.0505, abs=2e-4)


def test_p_value_matches_the_normal_distribution_and_keeps_precision_in_the_tail() -> None:
    z = two_proportion_z(40, 1000, 61, 1000)
    assert z is not None
    assert two_proportion_p_value(40, 1000, 61, 1000) == pytest.approx(2 * (1 - NormalDist().cdf(abs(z))))
    tiny = two_proportion_p_value(10, 10_000, 900, 10_000)
    assert tiny is not None and 0 < tiny < 1e-100  # 1 - cdf would have rounded this to exactly 0


@given(
    a=st.integers(1, 5000).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n))),
    b=st.integers(1, 5000).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n))),
)
def test_p_value_is_a_probability_and_symmetric(a: tuple[int, int], b: tuple[int, int]) -> None:
    (sent_a, conv_a), (sent_b, conv_b) = a, b
    p = two_proportion_p_value(conv_a, sent_a, conv_b, sent_b)
    q = two_proportion_p_value(conv_b, sent_b, conv_a, sent_a)
    if p is None:
        assert q is None and (conv_a + conv_b) in {0, sent_a + sent_b}
    else:
        assert q is not None and 0.0 <= p <= 1.0 and math.isclose(p, q, rel_tol=1e-9, abs_tol=1e-300)


# --- decisions ---------------------------------------------------------------------------------------


def test_a_significant_difference_names_the_winner_in_words_a_marketer_reads() -> None:
    decision = choose_winner([v("A", 1000, 200), v("B", 1000, 250)], min_sample=500)
    assert decision.winner == "B"
    assert decision.p_value == pytest.approx(0.00742, abs=2e-5)
    assert decision.reason == "B's click rate 25.0% vs A's 20.0%, p = 0.00742 < 0.05: B wins."


def test_the_winner_does_not_depend_on_input_order() -> None:
    forwards = choose_winner([v("A", 1000, 200), v("B", 1000, 250)], min_sample=500)
    backwards = choose_winner([v("B", 1000, 250), v("A", 1000, 200)], min_sample=500)
    assert forwards == backwards


def test_an_insignificant_difference_waits_for_a_person() -> None:
    decision = choose_winner([v("A", 1000, 50), v("B", 1000, 55)], min_sample=500)
    assert decision.winner is None
    assert decision.p_value is not None and decision.p_value > 0.5
    assert "B's click rate 5.5% vs A's 5.0%" in decision.reason
    assert "not significant" in decision.reason and "choose by hand" in decision.reason


def test_alpha_is_the_threshold() -> None:
    results = [v("A", 1000, 40), v("B", 1000, 61)]  # p = 0.0320 (pooled 0.0505, z = 2.144)
    assert choose_winner(results, min_sample=100).winner == "B"
    strict = choose_winner(results, min_sample=100, alpha=0.01)
    assert strict.winner is None and "p = 0.032 ≥ 0.01" in strict.reason


def test_every_variant_must_reach_the_minimum_sample() -> None:
    decision = choose_winner([v("A", 400, 10), v("B", 1000, 200), v("C", 120, 60)], min_sample=500)
    assert decision == Decision(
        None,
        "Not enough data yet: every variant needs at least 500 sent; A (400 sent), C (120 sent) are below "
        "that. Wait longer or choose a winner by hand.",
        None,
    )
    assert choose_winner([v("A", 499, 10), v("B", 500, 200)], min_sample=500).reason.startswith(
        "Not enough data yet: every variant needs at least 500 sent; A (499 sent) is below"
    )


def test_a_variant_with_nothing_sent_never_divides_by_zero() -> None:
    decision = choose_winner([v("A", 0, 0), v("B", 100, 10)], min_sample=0)
    assert decision.winner is None and "A (0 sent)" in decision.reason


@pytest.mark.parametrize(("sent", "converted"), [(500, 0), (500, 500)])
def test_zero_variance_is_never_a_winner(sent: int, converted: int) -> None:
    decision = choose_winner([v("A", sent, converted), v("B", sent, converted)], min_sample=100)
    assert decision.winner is None and decision.p_value is None
    assert "no variance" in decision.reason
    assert two_proportion_p_value(converted, sent, converted, sent) is None


def test_equal_rates_with_different_sizes_are_a_tie() -> None:
    decision = choose_winner([v("A", 1000, 50), v("B", 2000, 100)], min_sample=100)
    assert decision.winner is None and decision.p_value is None
    assert decision.reason.startswith("A and B have the same click rate (5.0%): a tie")


def test_a_tie_at_the_top_of_three_is_no_winner_even_if_both_beat_the_third() -> None:
    decision = choose_winner([v("A", 1000, 90), v("B", 1000, 90), v("C", 1000, 10)], min_sample=100)
    assert decision.winner is None and "A and B have the same click rate (9.0%)" in decision.reason


def test_bonferroni_makes_three_variants_need_stronger_evidence() -> None:
    # B vs A and B vs C are each p = 0.0320: enough with two variants, not at 0.05 / 2 = 0.025 with three.
    two = choose_winner([v("A", 1000, 40), v("B", 1000, 61)], min_sample=100)
    three = choose_winner([v("A", 1000, 40), v("B", 1000, 61), v("C", 1000, 40)], min_sample=100)
    assert two.winner == "B"
    assert three.winner is None
    assert "p = 0.032 ≥ 0.025 (0.05 split over 2 comparisons)" in three.reason
    assert (
        choose_winner(
            [v("A", 1000, 40), v("B", 1000, 61), v("C", 1000, 40)], min_sample=100, alpha=0.1
        ).winner
        == "B"
    )


def test_the_reported_p_value_is_the_weakest_comparison() -> None:
    # B beats C overwhelmingly but A only narrowly: the decision rests on B vs A.
    decision = choose_winner([v("A", 2000, 200), v("B", 2000, 260), v("C", 2000, 20)], min_sample=100)
    assert decision.p_value == pytest.approx(two_proportion_p_value(260, 2000, 200, 2000))
    assert "B's click rate 13.0% vs A's 10.0%" in decision.reason
    assert decision.winner == "B"  # p = 0.0026 < 0.025


def test_six_variants_with_one_clear_winner() -> None:
    results = [v(name, 2000, 100) for name in "ABCDE"] + [v("F", 2000, 200)]
    decision = choose_winner(results, min_sample=1000)
    assert decision.winner == "F"
    assert decision.p_value is not None and decision.p_value < 0.05 / 5
    assert "p < 0.001 < 0.01 (0.05 split over 5 comparisons)" in decision.reason


def test_the_metric_name_is_the_callers() -> None:
    decision = choose_winner([v("A", 1000, 200), v("B", 1000, 250)], min_sample=1, metric="booking rate")
    assert decision.reason.startswith("B's booking rate 25.0% vs A's 20.0%")


def test_one_variant_or_none_is_nothing_to_compare() -> None:
    assert choose_winner([v("A", 1000, 10)], min_sample=1).winner is None
    assert choose_winner([], min_sample=1).reason.startswith("An A/B test needs at least two variants")


@pytest.mark.parametrize(
    ("results", "alpha"),
    [
        ([v("A", 10, 11), v("B", 10, 1)], 0.05),  # more converted than sent
        ([v("A", -1, 0), v("B", 10, 1)], 0.05),
        ([v("A", 10, 1), v("A", 10, 2)], 0.05),  # duplicate names
        ([v("A", 10, 1), v("B", 10, 2)], 0.0),
        ([v("A", 10, 1), v("B", 10, 2)], 1.5),
    ],
)
def test_inconsistent_input_is_a_programming_error(results: list[VariantResult], alpha: float) -> None:
    with pytest.raises(ValueError):
        choose_winner(results, min_sample=1, alpha=alpha)
