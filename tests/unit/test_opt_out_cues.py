"""Messages named close to stopping them read as a likely opt-out, in each language; look-alikes do not."""

from __future__ import annotations

import pytest

from messaging.opt_out_cues import asks_for_messages_again, asks_to_stop_messages, stop_was_a_mistake
from messaging.sms_classifier import OPT_OUT_SURE, Intent, classify
from messaging.sms_languages import fold, words


@pytest.mark.parametrize(
    "text",
    [
        "Could you stop with the reminder messages, I have it in my diary",
        "please remove my number from your list",
        "cancel the SMS notifications too",
        "Desactiven los recordatorios por mensaje",
        "Por favor quiten mi número de la lista",
        "Smettete di mandarmi messaggi",
        "Σταματήστε τα μηνύματα παρακαλώ",
        "Làm ơn ngừng gửi tin nhắn",
        "Itigil nyo na po ang mga text",
        "कृपया मेरा नंबर लिस्ट से हटा दें",
        "ਮੈਸੇਜ ਬੰਦ ਕਰੋ ਜੀ",
        "وقف الرسائل لو سمحت",
        "请不要再发短信给我",
        "唔該取消啲短訊通知",
    ],
)
def test_messages_named_near_stopping_them(text: str) -> None:
    assert asks_to_stop_messages(fold(text)), text


@pytest.mark.parametrize(
    "text",
    [
        "Got your message, please cancel",  # cancelling after the messages: the appointment
        "Cancel please, my number is 0412 345 678",  # a number, but not removed
        "Thanks for the reminder, see you then",
        "Can I stop by earlier?",
        "Por favor mándenme un mensaje con la dirección",
        "请发短信告诉我地址",
    ],
)
def test_look_alikes_are_not(text: str) -> None:
    assert not asks_to_stop_messages(fold(text)), text


def test_the_classifier_honours_them_as_uncertain_opt_outs_but_keeps_the_keep_texting_ones() -> None:
    read = classify("Desactiven los recordatorios por mensaje")  # no phrase of the rules says this
    assert read.intent is Intent.OPT_OUT and read.confidence < OPT_OUT_SURE  # confirmed with the way back
    assert classify("Don't stop the reminder texts please").intent is Intent.OTHER
    assert classify("I sent STOP by mistake, please resume the texts").intent is Intent.OPT_IN


# --- asking for the messages back (read only where no opt-out was found; acted on with the model's agreement)


@pytest.mark.parametrize(
    "text",
    [
        "Mándenme los mensajes otra vez",
        "Riattivate i messaggi per favore",
        "Στείλτε μου ξανά μηνύματα",
        "Bật lại tin nhắn nhắc hẹn",
        "Pakisend ulit ang mga text",
        "मैसेज फिर से चालू करो",
        "ਮੈਸੇਜ ਦੁਬਾਰਾ ਚਾਲੂ ਕਰੋ",
        "رجعوا الرسائل لو سمحتوا",
        "请恢复短信提醒",
        "START po",
        "START 唔該",
    ],
)
def test_messages_named_near_having_them_again(text: str) -> None:
    folded = fold(text)
    assert asks_for_messages_again(folded, words(folded)), text


@pytest.mark.parametrize(
    "text",
    [
        "Can you send me the address again?",  # again, but not our messages
        "Start time is 9?",  # START with more than politeness after it
        "¿A qué hora empiezo?",
    ],
)
def test_not_asking_for_messages_again(text: str) -> None:
    folded = fold(text)
    assert not asks_for_messages_again(folded, words(folded)), text


@pytest.mark.parametrize(
    ("text", "excused"),
    [
        ("Mandé STOP por error, reactiven los mensajes", True),
        ("我不小心发了退订，请继续发给我", True),
        ("Ho mandato stop per sbaglio, riattivate i messaggi", True),
        ("galti se stop bhej diya, message dobara bhejo", True),
        ("Stop texting me", False),
        ("Número equivocado, stop", False),  # a wrong number is no excuse for the stop
        ("Stop, I gave you this number by mistake", False),  # excused nothing: no messages asked back
    ],
)
def test_a_stop_excused_as_a_mistake(text: str, excused: bool) -> None:
    assert stop_was_a_mistake(fold(text)) is excused, text
