"""The learned reader (naive Bayes over character n-grams) and how the classifier lets it decide: what it
learns from, what it can and cannot overrule."""

from __future__ import annotations

import math
from unittest.mock import patch

import pytest

from messaging import reply_model
from messaging.reply_model import BlendedReplyModel, Example, LinearReplyModel, ReplyModel, features
from messaging.sms_classifier import Intent, classify


def model_of(*rows: tuple[str, str]) -> ReplyModel:
    return ReplyModel([Example(label, "en", text) for label, text in rows])


def test_features_fold_case_and_accents_and_mark_word_edges() -> None:
    assert features("STOP") == features("stop") == features("  stop ")
    assert " st" in features("stop") and " st" not in features("nonstop")
    assert features("Sáquenme") == features("saquenme")


def test_it_learns_which_words_go_with_which_label_and_ignores_what_it_never_saw() -> None:
    model = model_of(
        ("opt_out", "remove me from your list"),
        ("opt_out", "take me off the list"),
        ("confirm", "see you then"),
        ("confirm", "yes see you there"),
    )
    probabilities = model.probabilities("please remove me from the list")
    assert math.isclose(sum(probabilities.values()), 1.0)
    assert probabilities["opt_out"] > 0.9
    assert model.probabilities("see you")["confirm"] > 0.9
    # n-grams it never saw say nothing: a reply of them reads as an empty one
    assert model.probabilities("ωωω ζζ") == pytest.approx(model.probabilities(""))


def test_a_model_needs_examples() -> None:
    with pytest.raises(ValueError, match="needs examples"):
        ReplyModel([])


def test_the_shipped_model_learns_from_every_training_file_and_no_held_out_reply() -> None:
    examples = reply_model.load_examples()
    files = sorted(reply_model.TRAINING.glob("*.tsv"))
    assert len(files) >= 4 and len(examples) >= 3000
    assert {e.label for e in examples} == {i.value for i in Intent}
    fixtures = reply_model.TRAINING.parents[1] / "tests" / "fixtures"
    held_texts = {
        line.split("\t")[2]
        for held_out in fixtures.glob("sms_replies_heldout_*.tsv")
        for line in held_out.read_text(encoding="utf-8").splitlines()
        if line[:1] != "#"
    }
    assert len(held_texts) > 600
    assert not held_texts & {e.text for e in examples}


# --- how far the model may decide (a small model stands in, so each rule is seen on its own) --------------

OPT_OUT_MINDED = model_of(
    ("opt_out", "zorbl zorbl"), ("opt_out", "zorbl please"), ("confirm", "yes"), ("opt_in", "start")
)


@pytest.fixture
def opt_out_minded():
    with patch.object(reply_model, "trained", lambda: OPT_OUT_MINDED):
        yield


@pytest.mark.usefixtures("opt_out_minded")
def test_an_opt_out_the_model_suspects_is_honoured_as_an_uncertain_one() -> None:
    read = classify("zorbl zorbl")  # the rules know no such word: `other`, unsure
    assert read.intent is Intent.OPT_OUT and read.confidence == 0.75


@pytest.mark.usefixtures("opt_out_minded")
def test_the_model_never_overrides_a_rules_opt_out_nor_a_kept_reminder() -> None:
    assert classify("STOP").intent is Intent.OPT_OUT and classify("STOP").confidence >= 0.99
    kept = classify("don't stop the reminders zorbl")
    assert kept.intent is Intent.OTHER


def test_the_model_alone_never_opts_anyone_in() -> None:
    opt_in_minded = model_of(("opt_in", "blorp blorp"), ("opt_in", "blorp"), ("other", "hmm"))
    with patch.object(reply_model, "trained", lambda: opt_in_minded):
        assert classify("blorp blorp").intent is Intent.OTHER
        assert classify("START").intent is Intent.OPT_IN  # the rules still read START


def test_an_opt_in_cue_needs_the_model_to_agree_and_a_suspected_opt_out_still_wins() -> None:
    """ "Mándenme los mensajes otra vez" names the messages near "again" (a rules cue): it opts in only when
    the model reads an opt-in too; neither alone does, and a model that suspects an opt-out makes it one."""
    text = "Mándenme los mensajes otra vez"
    agrees = model_of(("opt_in", text), ("opt_in", "mensajes otra vez"), ("other", "hola"))
    disagrees = model_of(("other", text), ("other", "mensajes otra vez"), ("opt_in", "start"))
    suspects = model_of(("opt_out", text), ("opt_out", "mensajes otra vez"), ("opt_in", "start"))
    with patch.object(reply_model, "trained", lambda: agrees):
        assert classify(text).intent is Intent.OPT_IN
        assert classify(text).confidence < 0.9  # unsure: staff can see it was read from cues
    with patch.object(reply_model, "trained", lambda: disagrees):
        assert classify(text).intent is Intent.OTHER
    with patch.object(reply_model, "trained", lambda: suspects):
        assert classify(text).intent is Intent.OPT_OUT


def test_a_bare_start_is_not_overruled_by_a_model_that_suspects_an_opt_out() -> None:
    """UNSTOP shares most of its n-grams with STOP; the carriers' keyword alone is not a guess."""
    stop_minded = model_of(("opt_out", "unstop"), ("opt_out", "stop"), ("other", "hmm"))
    with patch.object(reply_model, "trained", lambda: stop_minded):
        assert classify("UNSTOP").intent is Intent.OPT_IN
        assert classify("START").intent is Intent.OPT_IN


class Sure:
    """A stand-in model that reads every reply as `label` with probability `p` (the rest spread evenly)."""

    def __init__(self, label: str, p: float) -> None:
        self.labels = tuple(i.value for i in Intent)
        rest = (1 - p) / (len(self.labels) - 1)
        self._probabilities = {name: p if name == label else rest for name in self.labels}

    def probabilities(self, text: str, *, folded: str | None = None) -> dict[str, float]:
        return dict(self._probabilities)


def test_a_weak_rules_reading_gives_way_to_a_sure_model_but_a_strong_cue_and_a_yes_do_not() -> None:
    """ "Thanks for the results" is a yes to the rules only by its thanks (0.6): a model sure it is something
    else decides, no surer than the rules were. A strong cue stands ("N, I'm away that week" is our N), and
    the model never turns another reading into a yes."""
    with patch.object(reply_model, "trained", lambda: Sure("other", 0.9)):
        read = classify("Thanks for the results")
        assert read.intent is Intent.OTHER and read.confidence <= 0.6
    with patch.object(reply_model, "trained", lambda: Sure("other", 0.6)):
        assert classify("Thanks for the results").intent is Intent.CONFIRM  # not sure enough
    with patch.object(reply_model, "trained", lambda: Sure("reschedule", 0.95)):
        assert classify("N, I'm away that week").intent is Intent.CANCEL
    with patch.object(reply_model, "trained", lambda: Sure("confirm", 0.95)):
        assert classify("I need help").intent is Intent.HELP  # a weak help (0.65), never made a yes


def test_the_blend_averages_both_readers() -> None:
    examples = [Example("opt_out", "en", "remove me"), Example("confirm", "en", "see you then")] * 3
    blend = BlendedReplyModel(examples)
    nb, linear = ReplyModel(examples), LinearReplyModel(examples)
    for text in ("remove me please", "see you"):
        expected = {k: (nb.probabilities(text)[k] + linear.probabilities(text)[k]) / 2 for k in blend.labels}
        assert blend.probabilities(text) == pytest.approx(expected)
    assert max(blend.probabilities("remove me please").items(), key=lambda kv: kv[1])[0] == "opt_out"
