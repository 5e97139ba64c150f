"""A request to stop messages, read as words about our messages near words of stopping or removing.

Why: phrase lists read the wordings someone wrote down; a fresh set of replies showed "remove me from your
list", "cancel the SMS notices", "deactivate the reminders by message" missed in language after language.
Patients who want no more texts nearly always name what should stop (texts, messages, reminders, the list,
their number) and say stop, remove, cancel or don't, close together. So a reply with a messaging word within a
few words of a stopping word is a *likely* opt-out: honoured, and confirmed with the way back (START), which
costs a patient who meant something else one reply. Replies that say to keep the messages ("don't stop the
reminders") are read by the classifier before this and never reach it.

Words are written in natural script and folded as replies are (`sms_languages.fold`): lower case, no accents;
Latin words match at a word's start (so "message" matches "messages", "mensajitos" is its own entry).
"Number" and "list" count only with removing words (remove, delete, take off): "cancel, my number is …" is a
cancellation; and cancelling words only before the messages they name.
"""

from __future__ import annotations

import re

from messaging.sms_languages import fold

_MESSAGES = [
    # English, Tagalog, romanised Hindi and Punjabi use the English words
    "text", "txt", "sms", "message", "msg", "reminder", "notification", "subscription", "promo", "marketing",
    "mensahe", "paalala",
    # Spanish, Italian
    "mensaje", "mensajito", "msj", "recordatorio", "aviso", "notificacion", "suscripcion", "publicidad",
    "promocion",
    "messagg", "promemoria", "notifich", "iscrizione", "pubblicita",
    # Greek, Greeklish
    "μηνυμα", "υπενθυμισ", "ειδοποιησ", "minima",
    # Vietnamese (as typed with or without accents)
    "tin nhan", "nhan tin", "nhac nho", "thong bao",
    # Hindi, Punjabi
    "मैसेज", "मेसेज", "संदेश", "एसएमएस", "रिमाइंडर", "टेक्स्ट", "ਮੈਸੇਜ", "ਸੁਨੇਹ", "ਐਸਐਮਐਸ", "ਰਿਮਾਈਂਡਰ", "ਟੈਕਸਟ",
    # Arabic, Arabizi
    "رسائل", "رساله", "رسايل", "مسجات", "اشتراك", "تذكير", "rasayel", "rasa2el", "masajat",
    # Chinese, Cantonese
    "短信", "信息", "消息", "讯息", "訊息", "短訊", "通知", "提醒", "提示", "订阅", "訂閱",
]  # fmt: skip
_ON_A_LIST = [  # removing only: "take my number off your list"
    "number", "list", "numero", "lista", "listahan", "λιστα", "αριθμο", "arithmo", "noumero", "danh sach",
    "so dien thoai", "so toi", "he thong",
    "नंबर", "लिस्ट", "सूची", "ਨੰਬਰ",
    "ਲਿਸਟ", "رقم", "قائمه", "号码", "號碼", "名单", "名單", "电话",
]  # fmt: skip
_REMOVING = [
    "remove", "delete", "take me off", "take my number off", "get off", "unsubscribe", "opt out", "quitar",
    "quiten", "diagrap", "svhste", "sviste",
    "saquen", "sacar", "borr", "elimin", "togli", "rimuov", "cancellate il", "διαγραψ", "αφαιρεσ", "βγαλτε",
    "xoa", "bo so", "ra khoi", "tanggal", "burahin", "हटा", "ਹਟਾ", "hata", "احذف", "امسح", "شيل", "删", "刪",
    "移除", "退订", "退訂",
]  # fmt: skip
_STOPPING = [
    *_REMOVING,
    "stop", "no more", "dont send", "dont text", "dont message", "dont contact", "do not send", "do not text",
    "do not message", "do not contact", "disable", "turn off", "enough",
    "dont want", "do not want", "no longer want", "no quiero", "no deseo", "non desidero",
    "dejen", "deja de", "paren", "para de", "basta", "desactiv", "no me manden", "no me envien", "no manden",
    "no envien", "ya no", "smett", "disattiv", "non mandate", "non inviate", "non voglio",
    "σταματ", "μη μου", "μην μου", "δεν θελω", "den thelo", "den thelw", "min mou", "mi mou", "dung", "ngung",
    "khong muon", "thoi",
    "itigil", "tigil", "huwag", "wag", "ayoko", "ayaw ko", "बंद", "मत", "नहीं चाहिए", "रोक", "band",
    "mat bhejo", "nahi chahiye", "nahi chahide", "nahin chahide", "ni chahide", "complaint kar",
    "shikayat kar", "ਬੰਦ", "ਨਾ ਭੇਜ", "ਨਹੀਂ ਚਾਹੀਦ", "ਰੋਕ", "na bhejo", "وقف", "توقف", "اوقف",
    "لا ترسل", "لا تبعت", "لا تتواصل", "بطل", "كفايه", "ما بدي", "bala", "wa2ef", "khalas", "不要",
    "别", "別", "停", "唔好", "唔要", "唔使", "不需要", "唔需要", "取消发送", "取消發送",
    "patayin", "pakipatay", "i off", "ioff",
]  # fmt: skip
# Cancelling counts only before the messages it names ("cancel the SMS too"): "got your message, please
# cancel" cancels the appointment.
_CANCELLING = ["cancel", "ακυρωσ", "huy", "कैंसल", "الغ", "取消"]
_NEAR = 30  # characters between the two, in the folded reply


def _alternation(words: list[str]) -> re.Pattern[str]:
    """One pattern matching any of `words` (folded), Latin ones where no Latin letter or digit precedes them
    (a word's start, also right after another script: "发了stop"). Written as a trie
    ("stop|stopp" as "stop(?:p)?"): Python's regex engine tries every alternative at every position, and a
    flat list of 150 words cost 25-50 µs a reply."""
    folded = {fold(word) for word in words}
    latin = sorted(w for w in folded if w[:1].isascii() and w[:1].isalpha())
    others = sorted(folded - set(latin))
    parts = [rf"(?<![a-z0-9]){_trie(latin)}"] if latin else []  # "send咗STOP": a Latin word after a Han one
    if others:
        parts.append(_trie(others))
    return re.compile("|".join(parts))


def _trie(words: list[str]) -> str:
    root: dict[str, dict] = {}
    for word in words:
        node = root
        for char in word:
            node = node.setdefault(char, {})
        node[""] = {}  # a word ends here
    return _pattern(root)


def _pattern(node: dict[str, dict]) -> str:
    ends = "" in node
    branches = [re.escape(char) + _pattern(child) for char, child in sorted(node.items()) if char]
    if not branches:
        return ""
    body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
    return f"(?:{body})?" if ends else body


_MESSAGES_RX, _ON_A_LIST_RX = _alternation(_MESSAGES), _alternation(_ON_A_LIST)
_STOPPING_RX, _CANCELLING_RX, _REMOVING_RX = (
    _alternation(_STOPPING),
    _alternation(_CANCELLING),
    _alternation(_REMOVING),
)


def _starts_and_ends(pattern: re.Pattern[str], folded: str) -> list[tuple[int, int]]:
    return [match.span() for match in pattern.finditer(folded)]


def _close(first: list[tuple[int, int]], second: list[tuple[int, int]], *, in_order: bool = False) -> bool:
    """Whether a span of `first` lies within _NEAR characters of one of `second` (before it, if in_order)."""
    for start, end in first:
        for other_start, other_end in second:
            if 0 <= other_start - end <= _NEAR or (not in_order and 0 <= start - other_end <= _NEAR):
                return True
    return False


def asks_to_stop_messages(folded: str) -> bool:
    """Whether the folded reply names our messages (or the patient's number on our list) close to a word of
    stopping (or removing) them. Each word list is one scan; the spans are compared after (one regex with
    both lists and the gap between them backtracked, and cost a reply about 200 µs)."""
    messages = _starts_and_ends(_MESSAGES_RX, folded)
    if messages:
        if _close(_starts_and_ends(_STOPPING_RX, folded), messages):
            return True
        if _close(_starts_and_ends(_CANCELLING_RX, folded), messages, in_order=True):
            return True
    listed = _starts_and_ends(_ON_A_LIST_RX, folded)
    return bool(listed) and _close(_starts_and_ends(_REMOVING_RX, folded), listed)


# --- the opposite: asking for the messages back ----------------------------------------------------------
# Why: replies asking for the texts again were read as `other` (or, sharing most words with an opt-out, as
# one) in every language but English. These cues are rules, read only when the rules found no opt-out; the
# classifier acts on them only where the learned model reads the reply as an opt-in too (`sms_classifier`),
# and a likely opt-out still wins.
_AGAIN = [
    "again", "resume", "restart", "reactivat", "re activat", "re enable", "reenable", "resubscrib", "back on",
    "turn on", "switch on", "unblock", "add me back", "put me back", "sign me up", "undo", "start",
    "reinstate", "restore", "reconnect", "返收",
    "rimettet", "rimetter", "riaccend",
    "otra vez", "de nuevo", "reactiv", "vuelvan a", "volver a", "di nuovo", "riattiv", "ricominc",
    "ξανα", "παλι", "ενεργοποιηστε", "pali", "ksana", "xana", "lai", "bat lai", "ulit", "muli",
    "फिर से", "फिर", "दोबारा", "चालू", "phir", "fer", "dobara", "dubara", "chalu", "shuru", "ਦੁਬਾਰਾ", "ਫਿਰ",
    "ਚਾਲੂ", "ਸ਼ੁਰੂ", "ਫੇਰ", "rimandatemi",
    "مره ثانيه", "رجعولي", "رجعلي", "ارجعولي", "مره اخري", "مره اخرى", "من جديد", "رجعوا", "ارجعوا",
    "ترجع", "فعلوا", "send返", "发返", "發返", "yerja3", "yirja3", "terja3", "tirja3", "rja3", "raja3",
    "اعيدوا", "اعاده", "استئناف", "恢复", "恢復", "重新", "再发", "再發", "再send", "再收", "收返", "開返",
    "开启", "開啟", "开始接收", "開始接收",
]  # fmt: skip
# "I sent STOP by mistake": a word of mistake close to the stop word it excuses.
_MISTAKE = [
    "mistake", "accident", "by error", "in error", "didnt mean", "did not mean", "por error", "sin querer",
    "per sbaglio", "per errore", "κατα λαθος", "kata lathos", "lo bam", "lo gui", "lo nhan", "vo tinh",
    "by mistake", "without thinking", "oops", "toddler", "my child", "my kids", "my baby", "my grandkids",
    "playing with my phone", "played with my phone", "पोते", "पोती", "बेटे ने", "बेटी ने", "ਪੋਤੇ", "ਪੋਤੀ",
    "pote ne", "beta ne", "beti ne",
    "aksidente", "di sinasadya", "nagkamali", "गलती से", "galti", "ਗਲਤੀ", "بالغلط", "بالخطا", "غلطه",
    "不小心", "唔小心", "误按", "誤按", "按错", "按錯", "撳錯", "手滑", "覆錯", "回错", "回錯",
    "乱按", "亂按", "乱咁", "亂咁", "χωρις να με ρωτησ", "sin preguntarme", "senza chiedermi",
    # someone else sent it: "my grandson pressed STOP for me"
    "my son", "my daughter", "my husband", "my wife", "my grandson", "my granddaughter", "my kid",
    "孙子", "孫子", "个孙", "個孫", "儿子", "兒子", "女儿", "女兒", "老公", "老婆", "帮我按", "幫我按",
    "con toi", "con tui", "η κορη μου", "ο γιος μου", "ο εγγονος μου", "η εγγονη μου", "ο αντρας μου",
    "η γυναικα μου", "mi hijo", "mi hija", "mi nieto", "mi nieta", "mio figlio", "mia figlia", "mio nipote",
    "anak ko", "apo ko", "mera beta", "meri beti", "mere pote", "ਮੇਰੇ ਪੋਤੇ", "ਮੇਰੇ ਮੁੰਡੇ", "ابني", "بنتي", "حفيدي",
    "個仔", "个仔", "個女", "个女", "我先生", "我太太", "mere munde", "munde ne", "kudi ne", "ਕੁੜੀ ਨੇ",
    "mere bete", "kori mou", "gios mou", "eggonos mou", "eggoni mou", "antras mou", "mio marito",
    "mia moglie", "mi esposo", "mi esposa", "mi marido", "asawa ko", "chau toi", "ibni", "binti", "زوجي",
    "زوجتي",
    # a slip, or the stop denied: "fat fingers", "meant to type START", "it was my husband, not me"
    "fat finger", "meant to type", "meant to send", "meant to say", "meant to press", "meant to write",
    "meant to reply", "not me", "start not", "start, not", "instead of start", "wrong message", "wrong text",
    "wrong chat", "meant for a different", "was meant for", "galat message", "galat msg", "误回", "誤回",
    "误发", "誤發", "con trai", "con gai",
    "bam nham", "bam lon", "giùm",
]  # fmt: skip
# STOP and START written in the reply's own script: the carriers' keywords, transliterated
STOP_IN_OTHER_SCRIPTS = frozenset(map(fold, ("ਸਟਾਪ", "ਸਟੌਪ", "स्टॉप", "स्टाप", "στοπ", "ستوب")))
START_IN_OTHER_SCRIPTS = frozenset(map(fold, ("ستارت", "ਸਟਾਰਟ", "स्टार्ट", "στάρτ")))
_STOP_SAID = ["stop", "unsub", "退订", "退訂", "停止", *STOP_IN_OTHER_SCRIPTS]
# While excusing a stop, "keep sending" / "continue" asks for the messages back too.
_CONTINUE = [
    "keep", "continue", "still", "pa rin", "sigan", "continu", "συνεχισ", "tiep tuc", "استمر", "الاستمرار",
    "继续", "繼續", "还是想", "還是想", "还是要", "還是要", "van muon", "रहो", "ਰਹੋ", "raho", "reho", "रहिए",
    "रहें", "ਰਹਿਣਾ", "ਰਹਿਓ", "rahiye", "rahein", "tuloy", "تستمر", "استمروا", "كملوا",
    # "I want the reminders" (in the reply that excuses the STOP)
    "θελω τις", "θελω τα", "θελω να παιρνω", "θελω να λαμβανω", "quiero recibir", "voglio ricevere",
    "li voglio", "le voglio", "मैसेज चाहिए", "message chahiye", "messages chahiye", "ضل", "يضل",
    "要收", "想收", "还想收", "還想收", "仲想收", "仲要收",
]  # fmt: skip
_START_FIRST = {"start", "unstop"}
# Politeness words that may follow a bare START in the reply's own language ("START po", "START 唔該").
_POLITE = {fold(word) for word in [
    "please", "pls", "plz", "thanks", "thank", "you", "po", "ạ", "a", "ji", "jee", "por", "favor", "per",
    "favore", "παρακαλώ", "parakalo", "من", "فضلك", "لو", "سمحت", "شكرا", "gracias", "grazie", "ευχαριστώ",
    "salamat", "dhanyavaad", "ਜੀ", "जी", "cam", "on", "xin", "vui", "long", "nha",
    "唔該", "谢谢", "謝謝", "多謝", "请", "請",
]}  # fmt: skip

# "Quiero seguir recibiendo los recordatorios" asks to keep them; "no quiero seguir recibiendo" is an opt-out.
_GO_ON_RX = re.compile(r"(?<!no )\b(?:quiero|quisiera|deseo|prefiero) seguir\b")
_AGAIN_RX, _MISTAKE_RX, _STOP_SAID_RX, _CONTINUE_RX = (
    _alternation(_AGAIN),
    _alternation(_MISTAKE),
    _alternation(_STOP_SAID),
    _alternation(_CONTINUE),
)


# "Call me, no texts": a word of refusal right beside our messages.
_REFUSING = [
    "no", "not", "never", "niente", "nessun", "ni", "sin", "nada de", "οχι", "χωρις", "nahi", "nahin", "na",
    "नहीं", "ना", "ਨਹੀਂ", "ਨਾ", "لا", "بدون", "بلا", "khong", "ko", "wag", "huwag", "hindi", "ayoko",
    "不要", "唔好", "唔要", "别", "別", "不用", "唔使",
]  # fmt: skip
_REFUSING_RX = _alternation(_REFUSING)
_BESIDE = 12  # characters between the refusal and the messages it refuses


def refuses_messages(folded: str) -> bool:
    """Whether the folded reply has a word of refusal within a few characters of our messages ("call me, not
    SMS", "Chiamatemi pure, ma niente SMS", "call kar lena, message nahi")."""
    for start, end in _starts_and_ends(_REFUSING_RX, folded):
        for other_start, other_end in _starts_and_ends(_MESSAGES_RX, folded):
            if 0 <= other_start - end <= _BESIDE or 0 <= start - other_end <= _BESIDE:
                return True
    return False


def stop_was_a_mistake(folded: str) -> bool:
    """Whether the folded reply excuses a stop word ("Mandé STOP por error", "我不小心发了退订") and asks for
    the messages back (again, resume, keep sending, "I want the messages"). One stop word only: "I sent stop
    by mistake, but now do stop texting me" says it again, and means it."""
    stops = _starts_and_ends(_STOP_SAID_RX, folded)
    if len(stops) != 1 or not _close(_starts_and_ends(_MISTAKE_RX, folded), stops):
        return False
    if _AGAIN_RX.search(folded) or _CONTINUE_RX.search(folded) or _GO_ON_RX.search(folded):
        return True
    return _wants_the_messages(folded)


def _wants_the_messages(folded: str) -> bool:
    """ "Mi hijo respondió STOP por mí, pero yo sí quiero los mensajes", "ابني رد بـ STOP عني، بس أنا بدي
    الرسائل": a wish close to our messages, and no refusal or stopping word anywhere but the excused stop
    ("my son sent STOP because I don't want texts" refuses)."""
    rest = _without_the_stop(folded)
    return (
        rest is not None
        and not _refuses(rest)
        and _close(_starts_and_ends(_WANTING_RX, rest), _starts_and_ends(_MESSAGES_RX, rest))
    )


def only_the_stop_refuses(folded: str) -> bool:
    """Whether the reply's one stop word (excused: `stop_was_a_mistake`) is its only word of refusing or
    stopping messages. Then the patient's own words decide, and the learned model is not asked: it reads
    "STOP" beside "messages" as an opt-out whatever the sentence says."""
    rest = _without_the_stop(folded)
    return rest is not None and not _refuses(rest)


def refuses_besides_the_stop(folded: str) -> bool:
    """Whether, its one stop word (excused) aside, the reply still refuses or stops some of our messages:
    "my son sent STOP by mistake, send the reminders again but no promos" opts out of the promos."""
    rest = _without_the_stop(folded)
    return rest is not None and (refuses_messages(rest) or asks_to_stop_messages(rest))


def _without_the_stop(folded: str) -> str | None:
    """The reply with its one stop word and the words excusing it blanked ("it was my husband who texted
    stop, not me": its "not" excuses); None if it has no stop word or several."""
    stops = _starts_and_ends(_STOP_SAID_RX, folded)
    if len(stops) != 1:
        return None
    for start, end in stops + _starts_and_ends(_MISTAKE_RX, folded):
        folded = folded[:start] + "~" * (end - start) + folded[end:]
    return folded


def refuses_nothing(folded: str) -> bool:
    """Whether the reply has no word of refusing or stopping messages at all, and no stop word: an opt-in
    the rules read in it ("mi rimettete nella lista degli sms?") is then the patient's own word."""
    return not _refuses(folded) and not _STOP_SAID_RX.search(folded)


def _refuses(folded: str) -> bool:
    return bool(
        _REFUSING_AFTER_RX.search(folded) or _STOPPING_RX.search(folded) or _NOT_WANTED_RX.search(folded)
    )


# "I unsubscribed last year but I'd like to get your updates again": a stop in the past, and the messages
# wished for again now, with no refusal between the wish and the "again" ("I'd like to never get them again").
_LEFT_BEFORE_RX = re.compile(
    r"\b(?:unsubscribed|unsubscribing|opted out|opting out|"
    r"(?:sent|replied|texted|typed|said|replied with) (?:a |the )?\W?stop|"
    r"(?:stopped|blocked|turned off|switched off) (?:your |the |all |my |these )?"
    r"(?:texts?|messages?|sms|reminders?|notifications?))\b"
)
_WISHED_BACK_RX = re.compile(
    r"\b(?:i ?'?d like|i would like|i want|i wanna|i ?'?d love|i would love|please|pls|plz)(?: to)? "
    r"(?:get|receive|have|start getting|start receiving|start texting|start sending|text|be sent"
    r"|hear from you|send me|send)\b"
    r"(?:(?!\b(?:not|never|no|dont|don't|stop)\b)[^.!?]){0,40}?"
    r"\b(?:again|(?:texts?|messages?|reminders?|updates?|sms|notifications?|them|these) back)\b"
    r"|\b(?:add|put|sign) me back\b|\bswitch (?:\w+ ){0,2}?back on\b|\bchanged my mind\b"
)


# The same in the replies' other languages ("之前退订了，现在想重新收到预约短信", "pehle unsubscribe kiya
# tha, ab phir se booking sms chahiye"): a word of "before" close before the stop word, a wish close to a
# word of "again", and no refusal or stopping word besides the stop word ("之前退订了，为什么还再发？" has no
# wish; "之前退订了，不想再收到" refuses).
_BEFORE = [
    "之前", "以前", "早前", "先前", "truoc", "pehle", "pahle", "ਪਹਿਲਾਂ", "पहले", "πριν", "prima", "antes",
    "dati", "noon", "قبل", "من قبل", "περσι", "περυσι", "ειχα", "el ano pasado", "l anno scorso", "去年",
    "pichle saal", "nam ngoai",
    # regret says the stop was before: "me arrepentí de darme de baja"
    "me arrepenti", "me arrepiento", "pentit", "ho cambiato idea", "cambie de opinion", "后悔", "後悔",
]  # fmt: skip
_LEFT = [
    *_STOP_SAID, "unsubscribe", "huy dang ky", "停咗", "停了", "叫你哋停", "叫你們停", "叫你们停", "取消订阅",
    "取消訂閱", "ακυρωσα", "απεγγραφ",
    "διαγραφη", "di de baja", "darme de baja", "disiscritt", "cancellat",
]  # fmt: skip
_WISH = [
    "想", "要", "muon", "chahiye", "chahta", "chahti", "चाहिए", "चाहता", "चाहती", "ਚਾਹੀਦ", "θελω", "vorrei",
    "voglio", "quiero", "quisiera", "gusto", "اريد", "بدي", "ابغى", "ابي", "me pueden", "me podrian",
    "potete", "potreste",
]  # fmt: skip
_REFUSING_AFTER = [
    "不想", "唔想", "不要", "唔要", "khong", "nahi", "nahin", "mat", "नहीं", "ਨਹੀਂ", "δεν ", "μη ", "μην ",
    "non ", "no ", "ayoko", "ayaw", "لا ", "ما بدي", "مش ",
    # a complaint asks why: "之前退订了，我想知道为什么又再收到短信"
    "为什么", "為什麼", "点解", "點解", "怎么", "怎麼", "why", "tai sao", "kyun", "kyon", "γιατι", "perche",
    "por que", "porque", "bakit", "ليش", "لماذا", "ليه",
]  # fmt: skip
_BEFORE_RX, _LEFT_RX, _WISH_RX, _REFUSING_AFTER_RX = (
    _alternation(_BEFORE),
    _alternation(_LEFT),
    _alternation(_WISH),
    _alternation(_REFUSING_AFTER),
)
_WISH_GAP = 25  # characters between the wish and its "again"
# The wish for our messages after an excused stop: the wishes above, English and romanised ones too.
_WANTING_RX = _alternation(
    [*_WISH, "i want", "i need", "i would like", "id like", "i still want", "i do want", "thelw", "thelo",
     "chahide", "chahida", "ਚਾਹੀਦੇ", "baddi", "bade", "3ayez", "3ayza", "gusto ko", "kailangan ko"]
)  # fmt: skip
_NOT_WANTED_RX = _alternation(
    ["dont", "do not", "not ", "never", "no longer", "didnt want", "did not want", "end", "cease", "quit",
     "finish", "unsubscrib", "opt out", "opted out", "alone", "remove", "off "]
)  # fmt: skip
_NOW_WANTED_RX = _alternation(
    [
        "ahora si quiero",
        "ahora quiero",
        "τωρα θελω",
        "ora voglio",
        "ora li voglio",
        "ora vorrei",
        "now i want",
        "now i do want",
        "ab chahiye",
        "ngayon gusto ko",
    ]
)


def asks_back_after_leaving(folded: str) -> bool:
    """Whether the folded reply says the patient stopped the messages before and wishes for them again."""
    if _LEFT_BEFORE_RX.search(folded) and _WISHED_BACK_RX.search(folded):
        return True
    left = _starts_and_ends(_LEFT_RX, folded)
    if not left or not _close(_starts_and_ends(_BEFORE_RX, folded), left):  # "me di de baja el año pasado"
        return False
    # the reply with its stop words blanked: the wish may come first ("想再收返你哋嘅提醒，之前unsub咗")
    rest = folded
    for start, end in left:
        rest = rest[:start] + "~" * (end - start) + rest[end:]
    if _REFUSING_AFTER_RX.search(rest) or _STOPPING_RX.search(rest):  # "...otra vez me llegan, que paren"
        return False
    if _NOW_WANTED_RX.search(rest):  # "pero ahora sí quiero los recordatorios"
        return True
    wishes = _starts_and_ends(_WISH_RX, rest)
    return any(  # the wish before its "again" ("现在想重新收到") or after it ("phir se sms chahiye")
        0 <= again_start - wish_end <= _WISH_GAP or 0 <= wish_start - again_end <= _WISH_GAP
        for wish_start, wish_end in wishes
        for again_start, again_end in _starts_and_ends(_AGAIN_RX, rest)
    )


def asks_for_messages_again(folded: str, tokens: list[str]) -> bool:
    """Whether the folded reply names our messages close to a word of having them again ("Mándenme los
    mensajes otra vez", "恢复短信提醒"), or is START / UNSTOP with only politeness around it ("START po")."""
    if tokens and tokens[0] in _START_FIRST and len(tokens) <= 4 and set(tokens[1:]) <= _POLITE:
        return True
    return _close(_starts_and_ends(_AGAIN_RX, folded), _starts_and_ends(_MESSAGES_RX, folded))
