"""The SMS reply classifier: accuracy on a labelled set, the opt-out safety rule, robustness, the model
fallback against a fake OpenAI-compatible server over real HTTP, and the `avatar-crm sms classify` command."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from messaging.sms_classifier import OPT_OUT_SURE, Classification, Intent, classify, classify_with_fallback
from models import Settings
from tests import sms_corpus
from tests.fakes.llm import FakeChatModel
from tests.servers import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
MODEL, API_KEY = "test-model", "sk-test-123"
DEV_REPLIES = sms_corpus.training()
HELD_OUT = sms_corpus.load(sms_corpus.HELD_OUT)
# The opt-outs the reader gets right, to show that case, punctuation and emoji do not change that.
OPT_OUTS = [
    r.text
    for r in DEV_REPLIES + HELD_OUT
    if r.intent is Intent.OPT_OUT and classify(r.text).intent is Intent.OPT_OUT
]
LANGUAGES = {"en", "zh", "yue", "ar", "vi", "pa", "el", "it", "hi", "es", "tl"}


# --- the labelled sets ------------------------------------------------------------------------------------


def test_the_labelled_sets_are_big_disjoint_and_cover_every_intent_and_language() -> None:
    assert len(DEV_REPLIES) + len(HELD_OUT) >= 1000
    assert not {r.text for r in DEV_REPLIES} & {r.text for r in HELD_OUT}
    for replies in (DEV_REPLIES, HELD_OUT):
        assert {r.intent for r in replies} == set(Intent)
        assert {r.language for r in replies} == LANGUAGES
        opt_out_languages = {r.language for r in replies if r.intent is Intent.OPT_OUT}
        assert opt_out_languages == LANGUAGES


def test_held_out_no_opt_out_is_missed_and_accuracy_is_at_least_97_percent(figures) -> None:
    """The bar of issue 13, on replies the reader was never tuned on, without the LLM: met on held-out set
    18's first run (386/396 = 97.5 %, 56/56 opt-outs; sets 14-17 read 93.0-97.3 % and missed up to 4
    opt-outs each on theirs). A regression on it fails here. When this set is tuned on and a fresh one takes
    its place, its first run decides whether the bar still holds (docs/benchmarks.md)."""
    report = sms_corpus.evaluate(HELD_OUT)
    _, opt_out_recall, _ = report.per_intent[Intent.OPT_OUT]
    figures(f"held-out set 18: accuracy {report.accuracy:.1%}, opt-out recall {opt_out_recall:.1%}")
    assert opt_out_recall == 1.0, report.text()
    assert report.accuracy >= 0.97, report.text()


def test_cross_validated_on_the_training_replies(figures) -> None:
    """Rules plus a model that never saw the fold it reads (5 folds): a floor under today's figures (90.6 %,
    opt-out recall 99.5 % on 3,365 replies; 91.8 %, 99.1 % on 4,733 with the blended model and the opt-in
    cues; 92.9 %, 99.7 % on 5,018 with weak rules readings giving way to the model; 94.4 %, 99.4 % on 5,735
    with held-out sets 4 and 5 as training replies and the rules of 2026-12-07; 94.6 %, 99.4 % on 6,068 with
    set 6 too; 95.1 %, 99.5 % on 6,451 with set 7; 95.3 %, 99.5 % on 6,824 with set 8; 95.5 %, 99.5 % on 7,237
    with set 9; 96.8 %, 99.9 % on 7,599 with set 10; 96.9 %, 99.9 % on 7,990 with set 11; 96.9 %, 99.9 % on
    8,407 with set 12; 97.4 %, 100 % on 10,407 with sets 13-17), so a change that makes the reader worse on
    replies it was not fitted to fails."""
    report = sms_corpus.cross_validate(folds=5)
    _, opt_out_recall, _ = report.per_intent[Intent.OPT_OUT]
    figures(f"5-fold: accuracy {report.accuracy:.1%}, opt-out recall {opt_out_recall:.1%}")
    assert report.accuracy >= 0.97, report.text()
    assert opt_out_recall >= 0.998, report.text()


def test_every_training_opt_out_the_rules_were_written_for_is_read() -> None:
    """The development replies the rules were tuned on (not the newer training replies the model learns
    from) are all read: every opt-out, and at least 98 % overall."""
    report = sms_corpus.evaluate(sms_corpus.load(sms_corpus.TRAINING / "sms_replies_dev.tsv"))
    assert report.per_intent[Intent.OPT_OUT][1] == 1.0, report.text()
    assert report.accuracy >= 0.98, report.text()


def test_a_foreign_question_about_confirming_does_not_break_the_rules(caplog) -> None:
    """It did: a help question with a foreign confirm cue and no English one reached an empty ranking
    (IndexError), and the reply fell back to a bare keyword check."""
    with caplog.at_level(logging.ERROR, logger="messaging.sms_classifier"):
        for text in ("Non capisco, come confermo?", "Δεν κατάλαβα, πώς επιβεβαιώνω;"):
            assert classify(text).confidence > 0.0, text
    assert "rules failed" not in caplog.text


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("取消", "zh-Hans"),
        ("唔好再send短訊俾我", "zh-Hant"),
        ("確認", "zh-Hant"),
        ("Sí, gracias", "es"),
        ("Non posso venire", "it"),
        ("Đừng nhắn tin nữa", "vi"),
        ("dung nhan tin nua", "vi"),
        ("لا أريد رسائل", "ar"),
        ("Δεν θέλω μηνύματα", "el"),
        ("ਮੈਸੇਜ ਨਾ ਭੇਜੋ", "pa"),
        ("मैसेज मत भेजो", "hi"),
        ("Hindi po ako makakapunta", "tl"),
        ("Yes see you then", None),
        ("STOP", None),
        # "a" is English too: an English reply is not answered in Vietnamese for it (set 13 was)
        ("My pain has gotten a lot worse, should I go to emergency instead?", None),
        ("Can I get a later time", None),
        ("发错人了吧？我不是陈先生", "zh-Hans"),  # 吧 is written the same in both scripts
    ],
)
def test_the_reply_language(text: str, language: str | None) -> None:
    assert classify(text).language == language


# --- the rules' decisions, spelled out ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "intent"),
    [
        ("N", Intent.CANCEL),  # our SMS say "N to cancel": N is not an opt-out
        ("no", Intent.CANCEL),
        ("CANCEL", Intent.CANCEL),
        ("R", Intent.RESCHEDULE),
        ("Y", Intent.CONFIRM),
        ("STOP", Intent.OPT_OUT),
        ("stop, I already told you I moved to Sydney", Intent.OPT_OUT),
        ("Yes stop", Intent.OPT_OUT),  # a STOP word wins over anything else in the reply
        ("Cancel my subscription", Intent.OPT_OUT),
        ("S T O P", Intent.OPT_OUT),
        ("can I stop by earlier?", Intent.RESCHEDULE),  # "stop by" is a visit, not an opt-out
        ("Do I stop eating before the scan?", Intent.OTHER),
        ("Where's the nearest bus stop?", Intent.OTHER),
        ("end of the week would suit me better, can I move?", Intent.RESCHEDULE),  # END only alone
        ("I quit smoking, does that matter?", Intent.OTHER),
        ("I have cancer, is that ok?", Intent.OTHER),  # not a typo of "cancel"
        ("I don't want these texts any more", Intent.OPT_OUT),  # no keyword: the patient's own words
        ("Please don't stop the reminders", Intent.OTHER),  # looks like an opt-out, asks the opposite
        ("Don't cancel my reminders", Intent.OTHER),
        ("Should I stop my medication?", Intent.OTHER),
        ("取消", Intent.CANCEL),  # a short cancel in Chinese
        ("退订", Intent.OPT_OUT),
        ("Sí", Intent.CONFIRM),  # a yes in Spanish
        ("No me manden más mensajes", Intent.OPT_OUT),
        ("no worries will be there", Intent.CONFIRM),
        ("cant make it tmrw sorry", Intent.CANCEL),
        ("Can't make Tuesday, can I do Wednesday?", Intent.RESCHEDULE),
        ("unstop", Intent.OPT_IN),
        ("who is this?", Intent.HELP),
        ("what do I need to bring?", Intent.OTHER),
        # rules added after the fresh held-out set's first run (2026-12-06), in other words than its rows
        ("unsubscr1be", Intent.OPT_OUT),  # digits typed for letters
        ("there's no need to text me anymore", Intent.OPT_OUT),
        ("Quítenme de la lista por favor", Intent.OPT_OUT),
        ("ما بدي مسجات", Intent.OPT_OUT),
        ("I replied STOP by accident, please keep the reminders", Intent.OPT_IN),
        ("turn the sms reminders back on", Intent.OPT_IN),
        ("Will I stop feeling dizzy after the contrast?", Intent.OTHER),  # stop + a gerund: not messages
        ("Non-stop traffic, might be a bit late", Intent.OTHER),
        ("Don't cancel my booking please, I'm coming", Intent.CONFIRM),
        ("Thanks, but where do I park?", Intent.OTHER),
        ("How do I reschedule?", Intent.HELP),  # a question about our messages
        ("I don't get it", Intent.HELP),
        ("No entiendo nada", Intent.HELP),
        ("N, I'm away that week", Intent.CANCEL),
        ("any later times?", Intent.RESCHEDULE),
        ("No paren los recordatorios", Intent.OTHER),  # "don't stop the reminders", in Spanish
        ("Non smettete di mandarmi messaggi", Intent.OTHER),
        ("请不要停止发短信给我", Intent.OTHER),
        ("Wag nyo pong ihinto ang text", Intent.OTHER),
        ("幫我cancel佢", Intent.CANCEL),  # an English word inside Chinese
        # ... and what they must not swallow
        ("No, dejen de mandarme mensajes", Intent.OPT_OUT),  # "no, stop sending me messages"
        ("stop annoying me", Intent.OPT_OUT),
        ("I sent stop by mistake but now I do want you to stop texting me", Intent.OPT_OUT),
    ],
)
def test_decisions(text: str, intent: Intent) -> None:
    assert classify(text).intent is intent


CLEAR = ["Y", "N", "R", "yes", "Cancel", "reschedule", "STOP", "START", "HELP", "👍"]


@pytest.mark.parametrize("text", CLEAR)
def test_clear_keywords_are_high_confidence(text: str) -> None:
    assert classify(text).confidence >= 0.9


def test_mixed_and_weak_replies_have_lower_confidence() -> None:
    mixed = classify("yes but can I change the time?")
    assert mixed.intent is Intent.RESCHEDULE and mixed.confidence < 0.75
    ok = classify("ok thanks")
    assert ok.intent is Intent.CONFIRM and 0.75 <= ok.confidence < 0.9
    assert classify("Please cancel, I'll rebook next month").confidence < 0.75
    for empty in ("", "   ", "🙂🙂", "?", "..."):
        result = classify(empty)
        assert result.intent is Intent.OTHER and result.confidence < 0.5, empty


def test_an_uncertain_opt_out_is_still_an_opt_out_with_a_lower_confidence() -> None:
    for text in ("Not interested", "wrong number", "When will the pain stop?"):
        result = classify(text)
        assert result.intent is Intent.OPT_OUT and result.confidence < OPT_OUT_SURE, text
    assert classify("STOP").confidence >= OPT_OUT_SURE


def test_the_result_carries_the_original_text_and_source() -> None:
    assert classify("  Yes!! ") == Classification("  Yes!! ", Intent.CONFIRM, 0.97, "rules")


@settings(max_examples=400, deadline=None)
@given(st.text())
def test_classify_never_raises_and_confidence_stays_in_range(text: str) -> None:
    result = classify(text)
    assert isinstance(result.intent, Intent)
    assert 0.0 <= result.confidence <= 1.0
    assert result.text == text


_NOISE = st.text(alphabet=" .,!?-*\t\n😀🙏👋", max_size=4)
_CASE = st.sampled_from([str, str.upper, str.lower, str.title, str.swapcase])


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(OPT_OUTS), _CASE, _NOISE, _NOISE)
def test_opt_outs_survive_case_punctuation_and_emoji(text: str, case: Any, before: str, after: str) -> None:
    assert classify(before + case(text) + after).intent is Intent.OPT_OUT


def test_every_listed_opt_out_survives_a_question_mark_emoji_or_dash_around_it() -> None:
    """Deterministic beside the sampled test above, which found "咪再發啦?" read as `other` (a "?" moved the
    model) and, run over every listed opt-out, 22 more such replies: each, with the edges patients type."""
    edges = [("", "?"), ("😀", "??"), ("-", " 🙏"), ("?", "!"), (".", " ?"), ("", "\t")]
    missed = [
        before + case(text) + after
        for text in OPT_OUTS
        for case in (str, str.upper)
        for before, after in edges
        if classify(before + case(text) + after).intent is not Intent.OPT_OUT
    ]
    assert missed == []


# --- the model fallback against a fake OpenAI-compatible server ------------------------------------------


@pytest.fixture(scope="module")
def model_server() -> Iterator[FakeChatModel]:
    with FakeChatModel(MODEL) as server:
        yield server


@pytest.fixture
def model(model_server: FakeChatModel) -> FakeChatModel:
    model_server.reset()
    return model_server


def llm_settings(url: str | None, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "crm_database_url": "sqlite:///unused.db",
        "sms_llm_url": url,
        "sms_llm_model": MODEL,
        "sms_llm_api_key": SecretStr(API_KEY),
        "sms_llm_timeout_seconds": 2.0,
        "sms_classifier_min_confidence": 0.75,
    }
    return Settings(**(values | overrides))


UNSURE = "Please cancel, I'll call to rebook when I'm back from holidays"  # rules: cancel, 0.7


async def test_the_model_is_asked_only_when_the_rules_are_unsure(model: FakeChatModel) -> None:
    assert classify(UNSURE).confidence < 0.75
    result = await classify_with_fallback(UNSURE, llm_settings(model.url))
    assert result == Classification(UNSURE, Intent.CANCEL, 0.92, source="llm")

    [request] = model.requests
    assert request["headers"]["authorization"] == f"Bearer {API_KEY}"
    body = request["json"]
    assert body["model"] == MODEL
    assert body["temperature"] == 0
    assert body["response_format"] == {"type": "json_object"}
    assert [m["role"] for m in body["messages"]] == ["system", "user"]
    assert body["messages"][1]["content"] == UNSURE

    sure = await classify_with_fallback("Yes see you then", llm_settings(model.url))
    assert sure.source == "rules" and sure.intent is Intent.CONFIRM
    assert len(model.requests) == 1


async def test_no_model_when_sms_llm_url_is_unset(model: FakeChatModel) -> None:
    result = await classify_with_fallback(UNSURE, llm_settings(None))
    assert result == classify(UNSURE)
    assert model.requests == []


async def test_no_bearer_header_without_a_key(model: FakeChatModel) -> None:
    await classify_with_fallback(UNSURE, llm_settings(model.url, sms_llm_api_key=None))
    [request] = model.requests
    assert "authorization" not in request["headers"]


async def test_the_model_cannot_overrule_a_rules_opt_out(model: FakeChatModel) -> None:
    model.content = json.dumps({"intent": "confirm", "confidence": 0.99})
    always_ask = llm_settings(model.url, sms_classifier_min_confidence=1.0)
    for text in ("stop", "please stop texting me", "When will the pain stop?"):
        result = await classify_with_fallback(text, always_ask)
        assert result.intent is Intent.OPT_OUT and result.source == "rules"
    assert model.requests == []


async def test_a_model_opt_out_is_accepted(model: FakeChatModel) -> None:
    model.content = json.dumps({"intent": "opt_out", "confidence": 0.7})
    result = await classify_with_fallback("hmm", llm_settings(model.url))  # the rules: other, 0.5
    assert result.intent is Intent.OPT_OUT and result.source == "llm"


@pytest.mark.parametrize(
    "failure",
    ["http 500", "timeout", "not json", "unknown intent", "no confidence", "html body", "unreachable"],
)
async def test_any_model_failure_falls_back_to_the_rules(
    model: FakeChatModel, failure: str, caplog: pytest.LogCaptureFixture
) -> None:
    url = model.url
    timeout = 2.0
    match failure:
        case "http 500":
            model.status = 500
        case "timeout":
            model.delay, timeout = 1.0, 0.2
        case "not json":
            model.content = "I think they want to cancel."
        case "unknown intent":
            model.content = json.dumps({"intent": "maybe", "confidence": 0.9})
        case "no confidence":
            model.content = json.dumps({"intent": "cancel"})
        case "html body":
            model.raw_body = b"<html>Bad gateway</html>"
        case "unreachable":
            url = f"http://127.0.0.1:{free_port()}/v1"
    with caplog.at_level(logging.WARNING, logger="messaging.sms_classifier"):
        result = await classify_with_fallback(UNSURE, llm_settings(url, sms_llm_timeout_seconds=timeout))
    assert result == classify(UNSURE)
    assert any("using the rules answer" in r.getMessage() for r in caplog.records)
    assert not any("holidays" in r.getMessage() for r in caplog.records), "patient text must not be logged"


async def test_a_fenced_json_answer_is_accepted(model: FakeChatModel) -> None:
    model.content = '```json\n{"intent": "Reschedule", "confidence": 1.4}\n```'
    result = await classify_with_fallback(UNSURE, llm_settings(model.url))
    assert (result.intent, result.confidence, result.source) == (Intent.RESCHEDULE, 1.0, "llm")


# --- the command line -------------------------------------------------------------------------------------


def run_cli(stdin: str, **env: str) -> list[dict[str, Any]]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("SMS_LLM_")} | env
    completed = subprocess.run(
        [sys.executable, "-m", "deployments.cli", "sms", "classify"],
        input=stdin.encode(),
        capture_output=True,
        cwd=REPO_ROOT,
        env=environment,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr.decode(errors="replace")
    return [json.loads(line) for line in completed.stdout.decode().splitlines()]


def test_cli_classifies_one_reply_per_line() -> None:
    lines = run_cli("Y\n\nSTOP!!\nyes but can I change the time?\r\n   \n👍\nwhat do I need to bring?\n")
    assert [(line["text"], line["intent"]) for line in lines] == [
        ("Y", "confirm"),
        ("STOP!!", "opt_out"),
        ("yes but can I change the time?", "reschedule"),
        ("👍", "confirm"),
        ("what do I need to bring?", "other"),
    ]
    for line in lines:
        assert set(line) == {"text", "intent", "confidence"}
        assert line["confidence"] == round(line["confidence"], 3) and 0 <= line["confidence"] <= 1


def test_cli_uses_the_model_when_configured(model: FakeChatModel) -> None:
    lines = run_cli(f"{UNSURE}\nY\n", SMS_LLM_URL=model.url, SMS_LLM_MODEL=MODEL, SMS_LLM_API_KEY=API_KEY)
    assert [(line["intent"], line["confidence"]) for line in lines] == [("cancel", 0.92), ("confirm", 0.97)]
    [request] = model.requests
    assert request["headers"]["authorization"] == f"Bearer {API_KEY}"
