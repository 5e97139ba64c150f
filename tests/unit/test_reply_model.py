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
    assert len(held_texts) > 300
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
    """ "Cheers legends" is a yes to the rules only by its cheers (0.6): a model sure it is something else
    decides, no surer than the rules were. A strong cue stands ("N, I'm away that week" is our N), and the
    model never turns another reading into a yes."""
    with patch.object(reply_model, "trained", lambda: Sure("other", 0.9)):
        read = classify("Cheers legends")
        assert read.intent is Intent.OTHER and read.confidence <= 0.6
    with patch.object(reply_model, "trained", lambda: Sure("other", 0.6)):
        assert classify("Cheers legends").intent is Intent.CONFIRM  # not sure enough
    with patch.object(reply_model, "trained", lambda: Sure("reschedule", 0.95)):
        assert classify("N, I'm away that week").intent is Intent.CANCEL
    with patch.object(reply_model, "trained", lambda: Sure("confirm", 0.95)):
        assert classify("I need help").intent is Intent.HELP  # a weak help (0.65), never made a yes


def _read_as(intent: Intent, *replies: str) -> None:
    """Each of `replies` is read as `intent`, under whatever stand-in model the caller patched in."""
    assert {text: classify(text).intent for text in replies} == dict.fromkeys(replies, intent)


def test_a_yes_then_a_side_question_stays_a_yes_whatever_the_model_reads() -> None:
    """The guide: a yes wins over a side question. A yes first, in any of the languages, then a question is a
    strong reading the model does not overrule (it did: "Yes, is the entrance on the main street?" became
    `other` when the model leaned that way)."""
    replies = (
        "Yes, is the entrance on the main street?",
        "Sì. Dove posso parcheggiare?",
        "Có, tôi có cần nhịn ăn không?",
        "Oo. Saan pwede mag-park?",
        "Y هل أحتاج أن أصوم قبل الفحص؟",
    )
    with patch.object(reply_model, "trained", lambda: Sure("other", 0.9)):
        for text in replies:
            read = classify(text)
            assert (read.intent, read.confidence >= 0.85) == (Intent.CONFIRM, True), text
        assert classify("Is the entrance on the main street?").intent is Intent.OTHER  # no yes: a question


def test_an_excused_stop_is_an_opt_in_and_only_another_refusal_lets_a_sure_model_overrule_it() -> None:
    """ "I sent STOP by mistake, keep sending": the stop word excused is an opt-in, also with the stop word
    right after Chinese characters ("发了STOP": no word boundary there). With no other word of refusing in
    the reply, no model overrules the patient's words (it reads "STOP" beside "send" as an opt-out whatever
    the sentence says: set 14). Another refusal of messages the rules read is an opt-out ("... but no
    promos"), unless the reply keeps the messages ("don't stop the reminders")."""
    excused = ("我不小心发了STOP，请继续给我发提醒", "我唔小心撳咗STOP，唔該繼續send")
    with patch.object(reply_model, "trained", lambda: Sure("opt_out", 0.8)):
        _read_as(Intent.OPT_IN, *excused, "I didn't mean to unsubscribe")
    with patch.object(reply_model, "trained", lambda: Sure("opt_out", 0.99)):
        _read_as(Intent.OPT_IN, *excused)
    with patch.object(reply_model, "trained", lambda: Sure("opt_in", 0.99)):  # the rules read the refusal
        _read_as(Intent.OPT_OUT, "My son sent STOP by mistake, send the reminders again but no promos please")
        _read_as(Intent.OPT_IN, "My son sent STOP by mistake. Please don't stop the reminders")
    with patch.object(reply_model, "trained", lambda: Sure("opt_in", 0.9)):  # a second stop means it
        assert classify("我不小心发了STOP，请继续... 算了，还是退订吧").intent is Intent.OPT_OUT
        assert classify("Mandé STOP sin querer, sigan... no, mejor STOP").intent is Intent.OPT_OUT


def test_call_me_or_a_new_number_is_for_a_person_but_call_me_no_texts_is_an_opt_out() -> None:
    """A model that has seen "me" and "number" in many opt-outs suspected "call me please" and "I have a new
    number" in several languages (0.7): they are read as `other` surely now, so only a model sure of an
    opt-out overrules them. With a refusal of our messages beside them they are opt-outs."""
    with patch.object(reply_model, "trained", lambda: Sure("opt_out", 0.9)):
        _read_as(
            Intent.OTHER,
            "Call me please",
            "Chiamatemi per favore",
            "唔該打俾我",
            "I have a new number: 0412 000 111",
            "Mi número cambia el mes que viene",
            "غيرت رقمي",
        )
    with patch.object(reply_model, "trained", lambda: Sure("other", 0.9)):
        _read_as(
            Intent.OPT_OUT,
            "Chiamatemi pure, ma niente SMS",
            "call kar lena, message nahi",
            "Call me, no texts",
        )


def test_thanks_for_something_else_and_help_in_one_word_in_any_language() -> None:
    """The guide: thanks for something other than the booking text is `other` ("thanks for the results"),
    thanks for the reminder is a yes; "Ayuda", "Aiuto", "帮助" alone ask for the help text."""
    with patch.object(reply_model, "trained", lambda: Sure("confirm", 0.45)):  # a model that decides nothing
        assert classify("Thanks for the results").intent is Intent.OTHER
        assert classify("检查结果收到了，谢谢").intent is Intent.OTHER
        assert classify("Thanks for the reminder").intent is Intent.CONFIRM
    with patch.object(reply_model, "trained", lambda: Sure("other", 0.9)):
        _read_as(Intent.HELP, "Ayuda", "Aiuto", "帮助", "Βοήθεια", "مساعدة", "Giúp đỡ", "Tulong")


def test_stopping_a_medicine_or_not_stopping_the_reminders_is_no_opt_out_in_any_language() -> None:
    """Look-alikes the rules read as opt-outs in Greek, Arabic, Vietnamese and Tagalog ("should I stop the
    tablets?", "don't stop the reminders"): a person reads them."""
    with patch.object(reply_model, "trained", lambda: Sure("other", 0.9)):
        _read_as(
            Intent.OTHER,
            "Να σταματήσω τα φάρμακα;",
            "هل أوقف الدواء قبل الفحص؟",
            "Đừng ngừng nhắc nhở nhé, tôi hay quên",
            "Wag niyo pong itigil ang reminders",
        )


def test_held_out_set_6s_misses_in_their_own_words() -> None:
    """Set 6's first run missed these (it is training data since): opt-outs without a stop word, an opt-in
    that starts with START, a confirm that asks us not to stop the reminders, "do I stop on the street?"."""
    with patch.object(reply_model, "trained", lambda: Sure("other", 0.9)):
        _read_as(
            Intent.OPT_OUT,
            "u guys message way too much, cut it out",
            "Can you not send these? Its spam to me",
        )
        read = classify("Is there a drop off zone out the front or do I stop on the street?")
        assert read.intent is Intent.OTHER
    with patch.object(reply_model, "trained", lambda: Sure("opt_out", 0.9)):
        assert classify("START. My husband sent the stop from my phone, I want them").intent is Intent.OPT_IN
        assert classify("Perdón, mensaje equivocado 😅").intent is Intent.OTHER
    with patch.object(reply_model, "trained", lambda: Sure("opt_out", 0.99)):  # however sure the model is
        read = classify("Yes confirmed. Please don't stop the reminders, I'm hopeless with dates")
        assert read.intent is Intent.CONFIRM


def test_held_out_set_7s_misses_in_their_own_words() -> None:
    """Set 7's first run missed these (training data since): asking leave is no reschedule, someone else's
    STOP excused, "I'd like the reminders back", two weekdays and a question after a no."""
    with patch.object(
        reply_model, "trained", lambda: Sure("reschedule", 0.45)
    ):  # a model that decides nothing
        _read_as(
            Intent.OTHER,
            "Can I bring my 3 year old? no one to mind her",
            "can I have a coffee in the morning",
        )
        assert classify("Can I come in the afternoon instead?").intent is Intent.RESCHEDULE
        assert classify("Την Πέμπτη δεν μπορώ, Παρασκευή γίνεται;").intent is Intent.RESCHEDULE
        assert classify("Can't make it Tuesday, I'm away till Friday, cancel please").intent is Intent.CANCEL
    with patch.object(reply_model, "trained", lambda: Sure("opt_out", 0.9)):  # an excused STOP stands
        _read_as(
            Intent.OPT_IN,
            "my daughter sent stop from my phone, please turn the texts back on",
            "刚才手滑回复了STOP，我还是想收到提醒",
        )
    with patch.object(reply_model, "trained", lambda: Sure("other", 0.9)):  # an opt-in in a sentence: unsure
        assert classify("I opted out last year but I'd like the reminders back now").intent is Intent.OPT_IN


def test_held_out_set_8s_misses_in_their_own_words() -> None:
    """Set 8's first run missed STOP written in Gurmukhi, "full stop", "resume SMS notifications" (and not its
    negation), a carer confirming for her mother, "I won't need this one"."""
    with patch.object(reply_model, "trained", lambda: Sure("other", 0.9)):
        _read_as(Intent.OPT_OUT, "ਸਟਾਪ", "स्टॉप", "Please don't resume the texts")
        assert classify("can we reschedule to Tuesday the 14th please full stop").intent is Intent.RESCHEDULE
        _read_as(
            Intent.CONFIRM,
            "我是她女儿，明天我陪妈妈一起过去",
            "Sono la figlia, la mamma verrà, la accompagno io",
        )
        read = classify("I ended up in ED last night and they did the CT there, so I won't need this one")
        assert read.intent is Intent.CANCEL
    with patch.object(reply_model, "trained", lambda: Sure("opt_out", 0.9)):
        assert classify("Please resume SMS notifications").intent is Intent.OPT_IN


def test_held_out_set_9s_misses_in_their_own_words() -> None:
    """Set 9's first run read 11 of its 33 opt-ins as opt-outs, most of them a STOP someone else sent; and
    missed a yes with a phone's signature, "what letter do I reply to confirm?" in other languages, a carer's
    "can she do Friday" after a no, "got it done somewhere else"."""
    with patch.object(reply_model, "trained", lambda: Sure("opt_out", 0.9)):
        _read_as(
            Intent.OPT_IN,
            "My son put STOP on my phone, I want the messages back",
            "我孙子帮我按了STOP，我还是要短信的",
            "Hồi nãy con tôi lỡ bấm STOP, tôi vẫn muốn nhận tin nhắc hẹn",
            "ستارت",
        )
    with patch.object(reply_model, "trained", lambda: Sure("other", 0.9)):
        assert classify("Y Sent from my iPhone").intent is Intent.CONFIRM
        _read_as(Intent.HELP, "要回复什么字母才算确认？", "tra loi chu gi de xac nhan vay")
        assert classify("Con trả lời giùm mẹ: mẹ con sẽ đi, con chở mẹ tới ạ").intent is Intent.CONFIRM
        assert classify("我搬咗去布里斯本，唔會去喇").intent is Intent.CANCEL
        assert classify("Σταματάει το λεωφορείο 216 μπροστά από το ιατρείο;").intent is Intent.OTHER
    with patch.object(reply_model, "trained", lambda: Sure("confirm", 0.45)):  # a model that decides nothing
        assert classify("Got it done somewhere else sorry").intent is Intent.CANCEL
        read = classify("im her daughter, mum cant come thursday, can she do friday")
        assert read.intent is Intent.RESCHEDULE


def test_the_blend_averages_both_readers() -> None:
    examples = [Example("opt_out", "en", "remove me"), Example("confirm", "en", "see you then")] * 3
    blend = BlendedReplyModel(examples)
    nb, linear = ReplyModel(examples), LinearReplyModel(examples)
    for text in ("remove me please", "see you"):
        expected = {k: (nb.probabilities(text)[k] + linear.probabilities(text)[k]) / 2 for k in blend.labels}
        assert blend.probabilities(text) == pytest.approx(expected)
    assert max(blend.probabilities("remove me please").items(), key=lambda kv: kv[1])[0] == "opt_out"


def test_the_shipped_blend_sums_its_packed_rows_exactly() -> None:
    """The blend adds both readers' weights as packed integers (seven labels, negative lanes borrowing from
    the lanes above): what it reads is the two readers' own average, to a billionth."""
    blend = reply_model.trained()
    assert isinstance(blend, BlendedReplyModel)
    nb, linear = blend._nb, blend._linear
    for text in ("STOP", "pls dont txt me again", "可以改到下星期吗？", "Sì, ci sarò 👍", "", "R", "x" * 400):
        expected = {k: (nb.probabilities(text)[k] + linear.probabilities(text)[k]) / 2 for k in blend.labels}
        assert blend.probabilities(text) == pytest.approx(expected, abs=1e-9, rel=0)


def test_held_out_set_10s_misses_in_their_own_words() -> None:
    """Set 10's first run read 4 of its 29 opt-ins as opt-outs (a STOP a daughter or grandson sent, one sent
    "sin querer", an unsubscribe "last year" with the updates wished back), and missed HELP in Devanagari,
    Arabizi's "el8i el ma3ad", "too easy", "thanks for calling me back" and "the new one" (a clinic)."""
    with patch.object(reply_model, "trained", lambda: Sure("opt_out", 0.9)):
        _read_as(
            Intent.OPT_IN,
            "I unsubscribed last year but I'd like to get your updates again",
            "個孫玩我部電話亂咁覆咗停止，唔該send返啲提醒俾我",
            "Η κόρη μου έστειλε STOP χωρίς να με ρωτήσει, θέλω να παίρνω πάλι τις υπενθυμίσεις",
            "Mandé STOP sin querer, quiero seguir recibiendo los recordatorios",
            "mainu reminder fer ton bhejya karo ji, bhul jaanda haan",
        )
        _read_as(  # what those rules must not read as an opt-in
            Intent.OPT_OUT,
            "I unsubscribed, why am I getting your updates again?",
            "I unsubscribed last month, I dont want to get them again",
            "Mandé STOP sin querer pero pensándolo bien no quiero seguir recibiendo nada",
            "reminder fer ton na bhejo",
            "message phir se mat bhejna",
        )
    with patch.object(reply_model, "trained", lambda: Sure("other", 0.9)):
        _read_as(Intent.HELP, "हेल्प", "ਹੈਲਪ", "meen enta?")
        _read_as(Intent.CANCEL, "msh ha2dar aagi, el8i el ma3ad law sama7t")
        _read_as(Intent.RESCHEDULE, "momken ne2ajel el maw3ed?")
        _read_as(Intent.CONFIRM, "Too easy", "Yes. Is it still at the Parramatta clinic or the new one?")
        _read_as(Intent.OTHER, "Lost my referral. Can my GP email you a new one?")
    with patch.object(reply_model, "trained", lambda: Sure("confirm", 0.9)):
        _read_as(Intent.OTHER, "Thanks for calling me back earlier")


def test_a_patient_who_left_before_and_wishes_the_texts_back_is_an_opt_in_in_any_language() -> None:
    """A stop in the past, then the texts wished for again now: an opt-in only a model sure of an opt-out
    overrules. A complaint that they came again, a wish refused, or a "why" stays an opt-out."""
    with patch.object(reply_model, "trained", lambda: Sure("opt_out", 0.9)):
        _read_as(
            Intent.OPT_IN,
            "之前退订了，现在想重新收到预约短信",
            "之前unsub咗，而家想再收返booking短訊",
            "Trước em hủy đăng ký rồi, giờ muốn nhận lại tin nhắn hẹn",
            "pehle unsubscribe kiya tha, ab phir se booking sms chahiye",
            "Antes mandé STOP, ahora quiero recibir los mensajes otra vez",
            "Prima ho scritto STOP, ora vorrei ricevere di nuovo i promemoria",
        )
        _read_as(
            Intent.OPT_OUT,
            "我之前已经退订了，为什么还再发？",
            "之前退订了，我想知道为什么又再收到短信",
            "之前退订了，不想再收到",
            "pehle unsubscribe kiya tha, ab phir se sms nahi chahiye",
            "Antes mandé STOP y otra vez me llegan, quiero que paren",
            "Before I sent STOP and you text me again, I want it to stop",
        )


def test_opt_outs_the_cross_validation_missed_are_read_by_the_rules() -> None:
    """Worded in ways the model (trained without them) missed: "don't send me again" in Greek was read as an
    opt-in for its "again"; "wrong number" in Punjabi and Hindi; turning the reminders off in Tagalog."""
    with patch.object(reply_model, "trained", lambda: Sure("other", 0.9)):
        _read_as(
            Intent.OPT_OUT,
            "Μην μου ξαναστείλετε",
            "Ακυρώστε το ραντεβού και μη μου ξαναστείλετε μήνυμα",
            "Κανένα μήνυμα πια παρακαλώ",
            "你好，这些短信我都不需要，麻烦取消发送",
            "Pakipatay na po yung SMS reminders",
            "ਗਲਤ ਨੰਬਰ ਹੈ",
            "galat number hai",
            "بطلوا ترسلوا تذكيرات",
        )


def test_a_question_with_no_yes_is_never_a_yes_on_the_models_word() -> None:
    """The guide: a question about the appointment without a yes is `other`. A model leaning to confirm
    (it did, for fasting and parking questions in every language) does not make it one; a yes first does."""
    with patch.object(reply_model, "trained", lambda: Sure("confirm", 0.9)):
        _read_as(Intent.OTHER, "Do I need a full bladder?", "Devo essere a digiuno?", "Có cần nhịn ăn không?")
        _read_as(
            Intent.CONFIRM,
            "Y po, kailangan ba mag-fasting?",
            "Confermo, quanto prima devo arrivare?",
            "Επιβεβαίωση, πόσο νωρίτερα να έρθω;",
            "可以可以，停车要收费吗？",
            "haanji, ki khali pet auna hai?",
        )


def test_running_late_or_arrived_is_for_the_desk_unless_a_yes_comes_with_it() -> None:
    with patch.object(reply_model, "trained", lambda: Sure("confirm", 0.9)):
        _read_as(
            Intent.OTHER,
            "Just parked, be there in 2",
            "Running 10 min late",
            "Ya llegué, estoy en la puerta",
            "Arrivo con 10 minuti di ritardo",
            "堵车，晚十分钟到",
            "thoda late ho jaunga, traffic hai",
        )
        _read_as(
            Intent.CONFIRM,
            "Yes I'll be there, might be 5 min late coming off night shift",
            "Hi yes this is fine, sorry for the late reply. Will be there Thursday",
        )
    with patch.object(reply_model, "trained", lambda: Sure("other", 0.9)):
        _read_as(Intent.RESCHEDULE, "Running late today, can we move it to Friday?")


def test_asking_to_be_added_back_is_an_opt_in_and_refusing_it_is_not() -> None:
    with patch.object(reply_model, "trained", lambda: Sure("other", 0.9)):
        _read_as(
            Intent.OPT_IN,
            "Add me back to your list",
            "Sign me back up for reminders",
            "Can you add my number back for reminders?",
            "请再给我发提醒短信",
            "請繼續給我發短信",
            "開始接收簡訊",
            "Έστειλα STOP κατά λάθος, θέλω τις υπενθυμίσεις",
        )
        assert classify("Dont add me back to your list").intent is not Intent.OPT_IN
        _read_as(Intent.OPT_OUT, "不要继续给我发短信", "别再给我发短信了")
        assert classify("你们为什么还再给我发短信？").intent is not Intent.OPT_IN


def test_held_out_set_11s_misses_in_their_own_words() -> None:
    """Set 11's first run read 8 of its 41 opt-ins as opt-outs (a toddler's STOP, "I regret opting out", a
    wish written before the unsubscribe, "keep sending" in Hindi, Arabic and Tagalog), and "the pain won't
    stop" as an opt-out; and took a cancelled work meeting, "not cancelling" and "any cancellations sooner?"
    for cancels, "ya" in Spanish for a yes."""
    with patch.object(reply_model, "trained", lambda: Sure("opt_out", 0.9)):
        _read_as(
            Intent.OPT_IN,
            "Oops that STOP was my toddler playing with my phone, please switch the texts back on",
            "I replied stop last year but now I need reminders for dad's scans, please add me back",
            "pls start texting me again, havent had any since I replied stop",
            "Yes please text me again, I regret opting out",
            "想再收返你哋嘅預約提醒，之前unsubscribe咗",
            "أرسلت STOP بالخطأ، أرجو أن تستمروا بإرسال التذكيرات",
            "गलती से STOP भेज दिया था, कृपया रिमाइंडर भेजते रहिए",
            "Na-send ko yung STOP by mistake, paki-tuloy po ang reminders",
        )
        _read_as(
            Intent.OPT_OUT, "Your texts won't stop, remove me", "I never stop getting your texts, enough"
        )
    with patch.object(reply_model, "trained", lambda: Sure("other", 0.9)):
        assert classify("Is there anything earlier? The pain won't stop and I can barely walk").intent is (
            Intent.RESCHEDULE
        )
        _read_as(
            Intent.CONFIRM,
            "yes will be there, had to cancel a work meeting but all good",
            "Not cancelling, see you Monday",
            "No I don't need to reschedule, Thursday is fine",
            "أؤكد الموعد. هل يجب أن أكون صائماً؟ ومن أي ساعة؟",
            "Được, hẹn gặp thứ Năm. Có chỗ đậu xe không?",
        )
        _read_as(Intent.RESCHEDULE, "Any cancellations sooner? Happy to take one at short notice")
        _read_as(Intent.CANCEL, "Ya me hice el estudio en el hospital, no lo necesito")
        _read_as(Intent.OTHER, "Can you send the report to my new GP instead, Dr Wong at Doncaster")
    with patch.object(reply_model, "trained", lambda: Sure("confirm", 0.45)):  # a model that decides nothing
        _read_as(Intent.RESCHEDULE, "Sorry can't make Friday, would the following Friday be ok")


def test_held_out_set_12s_misses_in_their_own_words() -> None:
    """Set 12's first run read "don't cancel, I'm coming" as a cancel in seven languages and "no need to
    reschedule" as a reschedule in four; and 8 of its 40 opt-ins as opt-outs (an unsubscribe last year with
    the reminders wanted now, "changed my mind", a grandson's STOP in Hindi, "undo my stop request")."""
    with patch.object(reply_model, "trained", lambda: Sure("other", 0.9)):
        _read_as(
            Intent.CONFIRM,
            "Đừng hủy nhé, tôi vẫn đến mà",
            "No cancelen, sí voy",
            "कैंसल मत करना, मैं आ रहा हूँ",
            "Wag niyo i-cancel, pupunta po ako",
            "Μην το ακυρώσετε, θα έρθω κανονικά",
            "唔好取消呀，我一定嚟㗎",
            "Non cancellate, vengo sicuro",
            "不用改时间，那天我有空，到时见",
            "no need to reschedule, wednesday works fine",
            "Had to cancel my dentist to make this one, but yes I'll be there",
            "Σύμφωνοι 👍",
        )
        _read_as(Intent.OTHER, "Please don't cancel my texts, I rely on them")  # keeps the texts: not a yes
        _read_as(Intent.CANCEL, "Sorry can't come, no need to rebook")
    with patch.object(reply_model, "trained", lambda: Sure("opt_out", 0.9)):
        _read_as(
            Intent.OPT_IN,
            "Είχα κάνει διαγραφή πέρσι, τώρα θέλω πάλι τις υπενθυμίσεις με μήνυμα",
            "i unsubscribed but changed my mind, text me again",
            "पोते ने मेरे फ़ोन से STOP भेज दिया, मुझे आपके मैसेज चाहिए",
            "Me di de baja el año pasado pero ahora sí quiero los recordatorios",
            "Undo my stop request",
        )
        _read_as(
            Intent.OPT_OUT,
            "Είχα κάνει διαγραφή πέρσι, γιατί μου στέλνετε πάλι μηνύματα;",
            "Είχα κάνει διαγραφή πέρσι, δεν θέλω πάλι μηνύματα",
            "Me di de baja el año pasado y otra vez me llegan, no quiero",
        )


def test_held_out_set_13s_misses_in_their_own_words() -> None:
    """Set 13's first run (95.4 %) missed these kinds of reply, written here in other words: a yes then a
    bracket; a yes in Arabic whose hamza the pattern was not folded for ("مؤكد"); "no change needed" in Greek,
    Italian and Tagalog; a Greek "can't Tuesday, anything else?"; an Arabizi "won't come"; a medicine stopped
    on the doctor's word; texts preferred to calls; care elsewhere or a house move taken for a new time; a
    stop of the texts in the past with the texts wished back; "which letter do I type"."""
    with patch.object(reply_model, "trained", lambda: Sure("other", 0.9)):
        _read_as(
            Intent.CONFIRM,
            "Yes (sorry, only just saw this)",
            "مؤكد، هل يوجد موقف سيارات؟",
            "Όχι, δεν χρειάζεται καμία αλλαγή, θα είμαι εκεί",
            "Non c'è bisogno di cambiarlo, va bene",
            "Hindi na po kailangan i-resched, okay lang po",
        )
        _read_as(Intent.CANCEL, "la2 msh ra7 aji")
        _read_as(
            Intent.OTHER,
            "my GP told me to stop the aspirin a week before, is that ok?",
            "I'm hard of hearing so please text me instead of ringing",
            "Should I just go to the hospital instead? It hurts a lot",
            "We moved house last month, is my address updated?",
        )
        _read_as(Intent.HELP, "do I type the whole word or just the letter?")
    with patch.object(reply_model, "trained", lambda: Sure("confirm", 0.45)):  # a model that decides nothing
        _read_as(Intent.RESCHEDULE, "Την Παρασκευή δεν μπορώ, μήπως έχετε κάτι άλλο;")
    with patch.object(reply_model, "trained", lambda: Sure("opt_out", 0.9)):
        _read_as(Intent.OPT_IN, "I blocked your messages last year, could you switch them back on please")
        _read_as(Intent.OPT_OUT, "I blocked your messages last year and still get them, stop")
    with patch.object(
        reply_model, "trained", lambda: Sure("other", 0.9)
    ):  # cross-validation's misses, now rules
        _read_as(
            Intent.OPT_OUT,
            "कृपया मुझसे संपर्क मत करो",
            "Llámenme si quieren, pero nada de mensajes",
            "Μη με ενοχλείτε άλλο με μηνύματα",
            "we do not want to hear from you",
            "打錯咗，我唔係呢個人??",
        )


def test_held_out_set_14s_misses_in_their_own_words() -> None:
    """Set 14's first run (95.1 %) read 7 of its 33 opt-ins as opt-outs: "my son replied STOP for me, but I
    want the messages" in six languages. The rules excused the STOP only when "again" or "keep" came with it,
    and a model sure of an opt-out overruled them; a STOP excused in the patient's words, with no other word
    of refusing, is now theirs to decide. Also: "count me out", "11 or after", "do you have an afternoon?" in
    Tagalog, "where did you get my number" in Arabizi and romanised Hindi / Punjabi, and "si" that is not a
    yes in Italian ("si è fermato") and Spanish ("si hace falta")."""
    with patch.object(
        reply_model, "trained", lambda: Sure("opt_out", 0.99)
    ):  # the model cannot overrule these
        _read_as(
            Intent.OPT_IN,
            "Mi marido mandó STOP, pero yo sí quiero los recordatorios",
            "我個女幫我覆咗STOP，我要收提醒㗎",
            "زوجي رد STOP بدالي، أنا بدي الرسائل",
            "mere bete ne STOP bhej diya, mujhe reminders chahiye",
            "o gios mou esteile STOP, thelw ta minimata",
            "Asawa ko nag-text ng STOP, pero gusto ko po ng mga text",
        )
        _read_as(  # another word of refusing: not excused, or left to the model
            Intent.OPT_OUT,
            "My son sent STOP and I don't want the texts either",
            "My daughter replied STOP for me, I want the texts to end",
            "Mi hijo mandó STOP por error, pero ya no quiero mensajes",
        )
    with patch.object(reply_model, "trained", lambda: Sure("other", 0.9)):
        _read_as(Intent.CANCEL, "count me out for thursday, sorry")
        _read_as(
            Intent.RESCHEDULE, "10 doesn't suit me, 2pm or later is fine", "May umaga po ba kayo sa Sabado?"
        )
        _read_as(Intent.HELP, "min wen jibtu ra2mi?", "mera number kahan se mila?")
        _read_as(Intent.OTHER, "La ferita si è chiusa, devo venire lo stesso?", "Llámenme si hace falta")
        # opt-outs the edge test and cross-validation found left to the model once set 14 was training
        _read_as(Intent.OPT_OUT, "Xin bỏ số tôi ra khỏi hệ thống?", "Ma chi vi ha dato il numero? Basta così")
    with patch.object(reply_model, "trained", lambda: Sure("opt_in", 0.9)):
        _read_as(Intent.OPT_IN, "baddi el rasayel yerja3o")


def test_held_out_set_15s_misses_in_their_own_words() -> None:
    """Set 15's first run (93.0 %) missed an opt-out ("wrong person, delete this number from your system":
    its rules reading was `other` at 0.85, the value that also meant "keeps the messages", so neither the
    opt-out cues nor the model were asked) and read 10 of 38 opt-ins as opt-outs: a STOP excused by a slip
    ("fat fingers", "meant to type START", "误回"), denied ("my husband, not me"), or regretted ("me
    arrepentí"); messages wished back with no stop word at all. Also a time range offered ("any time after
    1", "四点以后都行"), a correction ("I mean R"), a yes first in Vietnamese and Punjabi, "stop the music",
    "the bleeding stopped" in Greek, "which bus stop" in Cantonese, "¿de parte de quién?"."""
    with patch.object(reply_model, "trained", lambda: Sure("other", 0.9)):
        _read_as(Intent.OPT_OUT, "打错人了，我不是你们要找的人，请从系统里删除这个号码")
    with patch.object(reply_model, "trained", lambda: Sure("opt_out", 0.99)):
        _read_as(
            Intent.OPT_IN,
            "oops fat finger hit STOP, please undo",
            "I meant to type START, not STOP",
            "It was my wife who replied stop, not me. I want the reminders.",
            "我误回了退订，还想收提醒",
            "Mia moglie ha risposto STOP, rimettetemi i messaggi",
        )
        _read_as(Intent.OPT_OUT, "My wife replied STOP for me and I don't want the reminders either")
    with patch.object(reply_model, "trained", lambda: Sure("opt_in", 0.9)):
        _read_as(
            Intent.OPT_IN,
            "I'd like to get your reminder texts again",
            "麻烦把提醒短信重新开启",
            "Me arrepentí de darme de baja, ¿me pueden volver a mandar los recordatorios?",
        )
    with patch.object(reply_model, "trained", lambda: Sure("confirm", 0.45)):  # a model that decides nothing
        _read_as(
            Intent.RESCHEDULE, "Can't do mornings, anytime after 2 works", "那天不行，下午三点以后都可以"
        )
        _read_as(Intent.RESCHEDULE, "Sorry I mean R", "Pwede po bang agahan?")
        _read_as(Intent.CONFIRM, "Dạ được, có cần mang giấy giới thiệu không ạ?", "ठीक है। खाली पेट आना है?")
        _read_as(Intent.HELP, "¿De parte de quién es?")
        _read_as(
            Intent.OTHER,
            "could you stop the radio in the waiting room next time",
            "Σταμάτησε ο πόνος, χρειάζεται ακόμα η εξέταση;",
            "搭邊個巴士最近？",
            "do I need to stop eating the night before?",
        )
    with patch.object(reply_model, "trained", lambda: Sure("other", 0.9)):  # found once set 15 was training
        _read_as(Intent.OPT_OUT, "Tama na po ang mga text?", "ਕਿਰਪਾ ਕਰਕੇ ਸੰਪਰਕ ਨਾ ਕਰੋ")


def test_held_out_set_16s_misses_in_their_own_words() -> None:
    """Set 16's first run read 97.3 % (the bar's accuracy, for the first time) but missed two opt-outs: "I
    moved to Melbourne, no need to send me anything anymore" (a reschedule: "moved to") and "cancel and don't
    bother me again with messages" in Greek. Also an opt-in in a sentence ("mi rimettete nella lista degli
    sms?") overruled by a model reading "list" and "sms" as an opt-out: with no word of refusing or stopping
    in the reply, the rules' opt-in stands. Romanised Punjabi "haan" after a verb is "(we) are", no yes."""
    with patch.object(reply_model, "trained", lambda: Sure("reschedule", 0.9)):
        _read_as(
            Intent.OPT_OUT,
            "We've moved interstate, no need to send us any more texts",
            "Ακυρώστε το ραντεβού και μην ξαναεπικοινωνήσετε μαζί μου",
        )
    with patch.object(reply_model, "trained", lambda: Sure("opt_out", 0.99)):
        _read_as(
            Intent.OPT_IN,
            "Riaggiungetemi alla lista sms per favore",
            "Con gái tôi bấm STOP giùm, tôi vẫn muốn nhận tin nhắn",
        )
        # a word of refusing, and the model is asked: "rimettetemi nella lista" with "non" in it
        _read_as(Intent.OPT_OUT, "non rimettetemi nella lista degli sms")
    with patch.object(reply_model, "trained", lambda: Sure("other", 0.9)):
        _read_as(Intent.HELP, "怎么回复才算确认？", "kif bred 3ala hal message?")
    with patch.object(reply_model, "trained", lambda: Sure("confirm", 0.45)):  # a model that decides nothing
        _read_as(Intent.RESCHEDULE, "can't do the 3rd, what else have you got?")
        _read_as(Intent.OTHER, "reminder band na karna ji, main bhul jaanda haan")
    with patch.object(reply_model, "trained", lambda: Sure("other", 0.9)):  # found once set 16 was training
        _read_as(
            Intent.OPT_OUT,
            "Ya no hace falta que me manden nada?",
            "Tôi chuyển nhà rồi, không cần liên hệ nữa?",
            "Hindi niyo na ako kailangang i-text?",
            "quit bugging me with these",
            "我哋搬咗走，唔使再聯絡我哋?",
            "yes ok but that's the last message I want",
        )
        _read_as(Intent.CONFIRM, "haan ji, aa jaavanga")


def test_held_out_set_17s_misses_in_their_own_words() -> None:
    """Set 17's first run (96.4 %) missed four opt-outs, each "I moved away for good, no need to contact me"
    (Punjabi, Italian, Hindi, Greek), and read four opt-ins as opt-outs (a STOP "meant for a different
    number", a granddaughter's STOP with "avisos" wanted, "reinstate SMS reminders", Cantonese "之前叫你哋停，
    而家想返收"). Also "有冇問題？" and "一起去吗？" are questions, not yeses; "ο πόνος σταμάτησε" stopped by
    itself; "is there a shuttle" asks about the place; Vietnamese "có tôi sẽ tới." is a yes first."""
    with patch.object(reply_model, "trained", lambda: Sure("other", 0.9)):
        _read_as(
            Intent.OPT_OUT,
            "ਹੁਣ ਮੈਂ ਕੈਨੇਡਾ ਰਹਿੰਦਾ ਹਾਂ, ਸੰਪਰਕ ਦੀ ਲੋੜ ਨਹੀਂ",
            "अब मुझसे संपर्क करने की जरूरत नहीं है",
            "Sono tornata in Italia, non serve scrivermi più",
            "Δεν χρειάζεται να μου ξαναστέλνετε, έφυγα από την Αυστραλία",
        )
        _read_as(
            Intent.OTHER,
            "我对造影剂过敏，有没有问题？有冇問題？",
            "Η αιμορραγία σταμάτησε, να έρθω;",
            "is there a bus from the station?",
        )
    with patch.object(reply_model, "trained", lambda: Sure("opt_out", 0.99)):
        _read_as(
            Intent.OPT_IN,
            "that STOP was meant for a different number, keep sending",
            "mi nieto mandó stop, yo sí quiero los avisos",
            "My son unsubscribed me by accident, please reinstate the texts",
        )
    with patch.object(reply_model, "trained", lambda: Sure("opt_out", 0.9)):  # a stop left behind: as set 12
        _read_as(Intent.OPT_IN, "之前叫你們停，而家想返收提醒短信")
    with patch.object(reply_model, "trained", lambda: Sure("other", 0.97)):
        _read_as(Intent.CONFIRM, "có, tôi sẽ đến. cho hỏi có cần nhịn ăn không?")
