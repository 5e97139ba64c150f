"""Replies in the languages most spoken at home in Australia after English: folding, a light language guess,
and small lexicons of what a patient writes to confirm, cancel, move, stop or restart messages, or ask who we
are. Used by `messaging.sms_classifier`; intents are its `Intent` values, written here as plain strings.

Everything is matched on folded text: lower case, accents and other combining marks removed (Vietnamese
"Đừng nhắn tin" and the unaccented "dung nhan tin" patients often type are the same), a few letters
unified (đ → d, final ς → σ, Arabic ى → ي and ة → ه). Patterns are written in natural script below and
folded the same way when compiled, so the two always agree.

The language guess is by script (Han, Arabic, Greek, Devanagari, Gurmukhi; Cantonese by its own characters
such as 唔 係 冇) and, for Latin script, by the letters only Vietnamese uses or by counting each language's
common words. A language's lexicon is read only when the guess names it — except its opt-out phrases, which
are read on every reply whatever the guess (a wrong guess must never cost an opt-out).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

_FOLD = str.maketrans(
    {"đ": "d", "ς": "σ", "ى": "ي", "ة": "ه", "ـ": None, "ँ": "ं", "ੰ": "ਂ", **dict.fromkeys("'’‘`ʼ´")}
)
# Words are runs of letters and digits; Indic vowel signs are marks, not letters, so they are added.
_TOKEN = re.compile(r"(?:[^\W_]|[\u0900-\u0963\u0966-\u0a7f])+")


def fold(text: str) -> str:
    """Lower case without accents or other combining marks (see the module docstring)."""
    lowered = text.casefold()
    if not lowered.isascii():
        decomposed = unicodedata.normalize("NFKD", lowered)
        lowered = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return lowered.translate(_FOLD)


def words(folded: str) -> list[str]:
    return _TOKEN.findall(folded)


# --- which language ---------------------------------------------------------------------------------------

_SCRIPTS = (  # (first, last, language)
    (0x0600, 0x06FF, "ar"),
    (0x0370, 0x03FF, "el"),
    (0x1F00, 0x1FFF, "el"),
    (0x0900, 0x097F, "hi"),
    (0x0A00, 0x0A7F, "pa"),
    (0x3400, 0x4DBF, "zh"),
    (0x4E00, 0x9FFF, "zh"),
    (0xF900, 0xFAFF, "zh"),
)
_CANTONESE = frozenset("唔係冇嘅咗啲乜嘢喺佢哋咁嚟嗰俾畀邊咩喇㗎啱諗噉睇嘥")
_VIETNAMESE = frozenset("ăđơưạảấầẩẫậắằẳẵặẹẻẽếềểễệỉịọỏốồổỗộớờởỡợụủứừửữựỳỵỷỹ")
# Chinese written in traditional characters is answered in traditional characters.
_TRADITIONAL = frozenset(
    "個們這預約訊發來時會謝對嗎確認間問題沒請訂閱號碼無嗰應該麼裡從點會過還車"
)  # not 吧: both scripts


def _markers(spaced: str) -> frozenset[str]:
    return frozenset(spaced.split())


# Common words of each language written in Latin letters (folded), chosen not to be English words.
_LATIN_MARKERS: dict[str, frozenset[str]] = {
    "es": _markers(
        "si gracias vale cita puedo quiero mensajes manden envien escribirme mandarme baja dejen cancelar "
        "cambiar otro otra dia favor claro estare voy quien quienes habla donde tengo necesito ayunas hora "
        "mas paren escriban nos vemos siento asistir poder reprogramar quisiera cuanto cuesta llevar recibir "
        "volver vez estacionar perfecto confirmo confirmado mover lunes para ir alli ahi usted escribe envie "
        "entiendo significa vuelvan hay semana viene lista borrenme reactivar esto"
    ),
    "it": _markers(
        "si grazie certo va bene confermo confermato saro ci annulla annullate disdire posso venire vengo "
        "spostare spostarlo vorrei cambiare giorno rimandare settimana prossima voglio piu ricevere messaggi "
        "basta smettete smettetela scrivermi cancellatemi dalla mandatemi chi siete devo essere digiuno dove "
        "parcheggiare perfetto riesco cancellare mi dispiace orario altro disponibile toglietemi riattivate "
        "scrive cosa portare quanto costa favore appuntamento non sono per capisco capito significa tardi "
        "questo messaggio cose"
    ),
    "tl": _markers(
        "po opo oo salamat sige pupunta ako kumpirmado darating hindi makakapunta lang kanselahin pwede "
        "puwede bang ba ilipat ibang araw palitan ang oras wag huwag kayong kayo mag ayoko ng mga tigilan "
        "nyo sakin ninyo akong padalhan mensahe gusto ko ulit makatanggap sino ito kailangan ayuno saan "
        "makakarating tutuloy paki ayaw pakitigil dadalhin magkano ano naman tayo sa maintindihan "
        "naiintindihan pakitanggal tanggalin listahan pakibalik ibalik hapon umaga"
    ),
    "vi": _markers(  # not "a" (also English)
        "toi khong ko duoc dc nhan tin nua huy lich hen doi ngay khac gio vang da cam xin loi di dung gui "
        "ngung muon lai vay cho sang tuan sau se xac giup cuoc dang ky dia chi dau nhe oi roi hieu gi"
    ),
    "hi": _markers(
        "haan han ji theek thik hai aaunga aaungi jaunga jaungi nahi nahin paunga sakta sakti kar karo "
        "kijiye "
        "dijiye kya sakte badal badalna bhejo bhejiye bhejna karna kaun yeh kal ke badle parso agle hafte "
        "pakka dhanyavad shukriya mujhe na samajh aaya jagah wapas vapas chalu"
    ),
    "pa": _markers(
        "haan ji theek hai sakda sakdi sakde karo kar na bhejo tarikh badal nahi tusi kaun hor dubara ho "
        "samajh aaya"
    ),
    "ar": _markers(  # Arabizi: Arabic in Latin letters, digits for the sounds Latin lacks (3 ع, 7 ح, 2 ء)
        "aywa na3am inshallah insha2allah inshalla shukran shokran tamam momken mumkin maw3ed ma3ad mawed "
        "la2 ra7 ejee sama7t sama7ti msh mish baddi 3ayez 3ayza rasayel ba2a khalas ha2dar 2ader ba2der "
        "a2dar aji aagi eje a7dar bokra ya3tikom 3afye el8i elghi ilghi alghi tany tani n2a5ar na2ajjel "
        "ne2ajel ne8ayar n8ayer ghayer 8ayer meen enta inta ento"
    ),
    "el": _markers(
        "nai entaxei entaksei efxaristo eyxaristw akyrosi akurosi tha eimai ime ekei den mporo erthw ertho "
        "rantevou rantevu"
    ),
}

# word -> the languages it marks, in `_LATIN_MARKERS` order: one lookup per word, not one per language
_MARKED_BY: dict[str, tuple[str, ...]] = {
    word: tuple(lang for lang, markers in _LATIN_MARKERS.items() if word in markers)
    for word in set().union(*_LATIN_MARKERS.values())
}


def _script(chars: set[str]) -> str | None:
    """The first of `_SCRIPTS` (in its order) that any of the characters is written in. Characters below
    Greek (ASCII, Latin with accents) are skipped at once: most replies have nothing else."""
    found = {
        language
        for ch in chars
        if (code := ord(ch)) >= 0x0370
        for first, last, language in _SCRIPTS
        if first <= code <= last
    }
    return next((language for _, _, language in _SCRIPTS if language in found), None) if found else None


def detect(text: str, tokens: list[str]) -> tuple[str, ...]:
    """The languages the reply is most likely in, best first; () for English or no telling."""
    chars = set(text)
    language = _script(chars)
    if language is not None:
        if language == "zh" and chars & _CANTONESE:
            return ("yue",)
        return (language,)
    if not text.isascii() and set(text.lower()) & _VIETNAMESE:
        return ("vi",)
    counts = dict.fromkeys(_LATIN_MARKERS, 0)
    for token in tokens:
        for lang in _MARKED_BY.get(token, ()):
            counts[lang] += 1
    best = max(counts.values())
    if best == 0:
        return ()
    return tuple(lang for lang, count in counts.items() if count == best)


def reply_language(text: str, tokens: list[str], languages: tuple[str, ...]) -> str | None:
    """The language to answer in besides English: a script says so at once; Latin-script words only when at
    least half the reply is that language's common words. Chinese is "zh-Hans" or "zh-Hant" by the
    characters the patient used (Cantonese is written in traditional ones)."""
    if not languages:
        return None
    language = languages[0]
    if language in ("zh", "yue"):
        return "zh-Hant" if language == "yue" or set(text) & _TRADITIONAL else "zh-Hans"
    if _script(set(text)) is not None or (language == "vi" and set(text.lower()) & _VIETNAMESE):
        return language  # the script, or letters only Vietnamese has, say so; unaccented words must agree
    markers = _LATIN_MARKERS[language]
    if 2 * sum(token in markers for token in tokens) >= len(tokens):
        return language
    return None


# --- what the words mean -----------------------------------------------------------------------------------

_MSG_ZH = "(?:短信|短訊|信息|訊息|消息|簡訊|短讯|讯息|sms|send|text|嘢|提醒)"
# not right after a refusal ("不要", "别", "唔好") or a "still / again" of complaint ("还", "又")
_NOT_REFUSED_ZH = "(?<!不要)(?<!不想)(?<!唔想)(?<!唔好)(?<!不用)(?<!唔使)(?<!不需要)(?<![别別还還又勿])"


@dataclass(frozen=True)
class _Cue:
    intent: str
    weight: float
    pattern: re.Pattern[str]
    body: str  # the alternatives, without the word edges a spaced language's cue adds around them
    spaced: bool


def _union(cues: Iterable[_Cue]) -> re.Pattern[str]:
    """One pattern matching wherever any of the cues would. The spaced cues share one pair of word edges
    ("(?:^| )(?:a|b|...)(?= |$)"): Python's regex engine tries every alternative at every position, and with
    the edge first in each it tried ~200 alternatives at each character of every reply (23 µs a reply)."""
    cues = list(cues)
    spaced = "|".join(cue.body for cue in cues if cue.spaced)
    parts = [f"(?:^| )(?:{spaced})(?= |$)"] if spaced else []
    parts += [f"(?:{cue.body})" for cue in cues if not cue.spaced]
    return re.compile("|".join(parts))


class Lexicon:
    """One language's cues, read in order; each match is blanked out so later cues cannot reuse its words
    ("不去" is read as a cancel before "去" could be read as anything else). "keep" cues are what looks like
    an opt-out and is not ("don't stop the reminders", "stop eating before the scan"): like opt-outs they
    are read on every reply, and first, so that an opt-out phrase cannot reuse their words."""

    def __init__(self, language: str, spaced: bool, cues: Iterable[tuple[str, float, Iterable[str]]]) -> None:
        self.language = language
        compiled = []
        for intent, weight, alternatives in cues:
            # A word is whatever lies between spaces: Indic vowel signs are not `\\w`.
            body = "|".join(fold(a) for a in alternatives).replace(r"\w", "[^ ~]")
            source = f"(?:^| )(?:{body})(?= |$)" if spaced else f"(?:{body})"
            compiled.append(_Cue(intent, weight, re.compile(source), body, spaced))
        self.keeps = tuple(cue for cue in compiled if cue.intent == "keep")
        self.cues = tuple(cue for cue in compiled if cue.intent != "keep")
        self.opt_outs = tuple(cue for cue in self.cues if cue.intent == "opt_out")
        # Every reply is checked against every language's opt-outs and keep phrases, so each is also one
        # alternation (per weight), for speed: most replies match none.
        weights = sorted({cue.weight for cue in self.opt_outs}, reverse=True)
        self._opt_out_by_weight = tuple(
            (weight, _union(cue for cue in self.opt_outs if cue.weight == weight)) for weight in weights
        )
        self._any_keep = _union(self.keeps) if self.keeps else None

    def read(self, spaced_text: str) -> dict[str, float]:
        scores: dict[str, float] = {}
        text = spaced_text
        for cue in self.cues:
            if cue.pattern.search(text):
                scores[cue.intent] = max(scores.get(cue.intent, 0.0), cue.weight)
                text = cue.pattern.sub(" ~ ", text)
        return scores

    def unkeep(self, spaced_text: str, punctuated: str) -> tuple[str, bool]:
        """The text with this language's keep phrases blanked out, and whether there were any. A phrase
        counts only if it holds with the punctuation left in: "No, dejen de mandarme mensajes" is "no, stop
        sending me messages", not "don't stop"."""
        found = False
        if self._any_keep is None or not self._any_keep.search(spaced_text):
            return spaced_text, found
        for cue in self.keeps:
            if cue.pattern.search(spaced_text) and cue.pattern.search(punctuated):
                found = True
                spaced_text = cue.pattern.sub(" ~ ", spaced_text)
        return spaced_text, found

    def opt_out(self, spaced_text: str) -> float:
        return next((weight for weight, union in self._opt_out_by_weight if union.search(spaced_text)), 0.0)


def _bare(*alternatives: str, fillers: str = "", sep: str = " ") -> str:
    """The whole reply is one of these, perhaps with the language's politeness words around it."""
    around = f"(?:(?:{fillers}){sep})*" if fillers else ""
    after = f"(?:{sep}(?:{fillers}))*" if fillers else ""
    return f"^{around}(?:{'|'.join(alternatives)}){after}$"


_ZH_FILL = "的|呀|啊|啦|喇|嘅|吖|咯|了|哦|喔|谢谢|謝謝|多谢|多謝|唔該|唔该|ok"
_CHINESE_CUES = (
    (
        "keep",
        0.8,
        (
            r"(?:不要|别|別|唔好|勿|请勿|請勿)(?:停止|停|取消)",
            r"停止?(?:吃|喝|服|食|饮|飲|进食|進食)",
            r"停(?:药|藥)",
        ),
    ),
    # "wrong number", as in English (0.8): "打错号码了", "打錯電話", "搵錯人", "打錯咗，我唔係呢個人"
    (
        "opt_out",
        0.8,
        (
            "(?:打错|打錯)(?:了)?(?:号码|號碼|电话|電話|号|號)",
            "(?:搵錯|找错|找錯)人",
            "(?:打錯|打错)咗",
            "(?:我)?(?:唔係|不是)(?:呢個|呢个|这个|這個)人",
        ),
    ),
    (
        "opt_out",
        0.97,
        (
            f"(?:不要|唔要|不想|唔想|不再)再?(?:收|接收)(?:到)?.{{0,4}}{_MSG_ZH}",
            "(?:唔使|不用|不需要|唔需要|毋須|无须|無須)再(?:聯絡|联络|聯繫|联系|搵|找)(?:我|我哋|我们|我們)",
        ),
    ),
    (
        "opt_out",
        0.97,
        (
            "退订",
            "退訂",
            "拒收",  # "refuse to receive": the carriers' other opt-out word beside 退订 / TD
            _bare("停", fillers=_ZH_FILL, sep=" ?"),  # "stop" and nothing else
            "取消订阅",
            "取消訂閱",
            f"(?:不要|别|別|唔好|勿|不用|唔使|唔需要|不需要|唔該唔好)再?(?:发|發|寄|send|传|傳|給我發|给我发)?{_MSG_ZH}",
            "(?:不要|别|別|唔好|勿|请勿|請勿)再?(?:发|發|寄|send|传|傳|打扰|打擾)",
            "咪再(?:发|發|寄|send|传|傳|打扰|打擾|俾我)",  # Cantonese 咪 ("don't") before 再 ("again")
            "(?:不要|别|別|唔好|咪)(?:再)?(?:烦|煩|联系|聯繫|联络|聯絡|搵)我",  # "don't bother / contact me"
            "(?:不要|别|別|唔好)(?:再)?(?:给|給|俾)我(?:发|發|send)",
            f"停止(?:发送|發送|发|發|send)?{_MSG_ZH}?",
            f"(?:不想|唔想|不再)(?:再)?(?:收|接收|接收到|收到){_MSG_ZH}?",
            f"唔使再(?:提醒|send|發|通知){_MSG_ZH}?",
        ),
    ),
    (
        "opt_in",
        0.9,
        (
            "重新订阅",
            "重新訂閱",
            f"恢复{_MSG_ZH}",
            f"恢復{_MSG_ZH}",
            f"(?:想|要)(?:再|继续|繼續|重新)(?:收|接收|收到){_MSG_ZH}",
            # "麻烦把短信通知重新打开": turned back on
            f"{_MSG_ZH}.{{0,4}}(?:重新|再)(?:打开|打開|开启|開啟|开通|開通|開返)",
            f"(?:重新|再)(?:打开|打開|开启|開啟|开通|開通)(?:返)?.{{0,4}}{_MSG_ZH}",
            f"再(?:send|发|發)(?:返)?(?:啲|d)?(?:{_MSG_ZH}|提示)",
        ),
    ),
    (
        "help",
        0.9,
        (
            "你是谁",
            "你是誰",
            "你们是谁",
            "你們是誰",
            "这是谁",
            "這是誰",
            "你係邊個",
            "邊位",
            "邊個(?=$| |呀|啊|嚟|黎|㗎|咧|嘅|先)",
            "哪里发来",
            "哪裡發來",
            "你哋係邊",
            "这是什么信息",
            "這是什麼信息",
            "呢個係咩",
            "係咩嚟",
        ),
    ),
    (
        "cancel",
        0.9,
        (
            "取消",
            "(?:唔會|唔会|不会|不會)(?:去|嚟|来|來)",
            "不去了",
            "不去",
            "不来了",
            "不來了",
            "来不了",
            "來不了",
            "去不了",
            "不能来",
            "不能來",
            "不能去",
            "不会去",
            "不會去",
            "唔嚟",
            "唔去",
            "嚟唔到",
            "去唔到",
            "唔得閒",
        ),
    ),
    (
        "reschedule",
        0.9,
        (
            "改期",
            # "那个时间去不了，不过下午四点以后都行": any time after, a range of their own
            "(?:以后|以後|之后|之後)(?:都|也)(?:行|可以|得|ok|冇問題|没问题)",
            "改(?:个|個)?时间",
            "改(?:个|個)?時間",
            "改日子",
            "改到",
            "改去",
            "改成",
            "换(?:个|個)?时间",
            "換(?:个|個)?時間",
            "换一天",
            "換一天",
            "换天",
            "另一天",
            "另一日",
            "第二日",
            "第二天",
            "其他时间",
            "其他時間",
            "推迟",
            "推遲",
            "延期",
            "转(?:去|到)",
            "轉(?:去|到)?第二",
        ),
    ),
    (
        "opt_in",
        0.9,
        (
            f"(?:恢复|恢復).{{0,4}}{_MSG_ZH}",
            f"(?:继续|繼續)(?:send|发|發|传|傳)?{_MSG_ZH}",
            f"(?:想|要)(?:再|继续|繼續|重新)(?:收|接收|收到)(?:返|回)?.{{0,3}}{_MSG_ZH}",
            # "请再给我发提醒短信", "请继续给我发提醒短信": asked to send again / go on sending; not after a
            # refusal ("不要继续给我发短信") or in a complaint ("你们为什么还再给我发短信？")
            f"^(?!.*(?:为什么|為什麼|点解|點解|干嘛|幹嘛|怎么又|怎麼又)).*?{_NOT_REFUSED_ZH}"
            f"(?:再|继续|繼續|重新)(?:给|給|俾|畀)我(?:发|發|send)(?:返)?.{{0,3}}{_MSG_ZH}",
            f"{_NOT_REFUSED_ZH}(?:开始|開始)(?:接收|收)(?:返)?.{{0,2}}{_MSG_ZH}",
        ),
    ),
    (
        "help",
        0.9,
        (r"什么意思|什麼意思|甚麼意思|咩意思|这是什么|這是什麼|看不懂|睇唔明|不明白|唔明|唔知(?:你)?講咩",),
    ),
    (
        "reschedule",
        0.9,
        (
            r"换到|換到|调到|調到|换成|換成|改在|挪到",
            "改(?:做|成|到)?(?:夜|晏|下午|上午|朝早|聽日|明天|後日|后天|星期|禮拜|礼拜)",
        ),
    ),
    (
        "confirm",
        0.9,
        (
            "确认",
            "確認",
            # not "有冇問題？" ("is there a problem?")
            "(?<!有)没问题",
            "(?<!有)沒問題",
            "(?<!有)冇問題",
            "(?<!有)冇问题",
            "会去",
            "會去",
            "会到",
            "會到",
            "会来",
            "會來",
            "會嚟",
            # not a question ("我可以带孩子一起去吗？": may I bring my child?)
            "(?:一起|陪(?:她|他|妈妈|媽媽|爸爸|妈|媽|我妈|我媽)(?:一起)?)(?:过去|過去|去|来|來|嚟)(?!.{0,2}(?:吗|嗎|么|麼))",
            "准时",
            "準時",
            "到时见",
            "到時見",
            "到时候见",
            "到時候見",
            "收到",
            "是的",
            "好的",
            "好呀",
            "好啊",
        ),
    ),
    ("confirm", 0.8, (_bare("可以", fillers=_ZH_FILL, sep=" ?"),)),
    (
        "confirm",
        0.9,
        (_bare("好", "行", "对", "對", "是", "係", "得", "嗯", "ok", fillers=_ZH_FILL, sep=" ?"),),
    ),
)

_ZH = Lexicon("zh", False, _CHINESE_CUES)
_YUE = Lexicon("yue", False, _CHINESE_CUES)

_AR = Lexicon(
    "ar",
    True,
    (
        (
            "keep",
            0.8,
            (
                r"لا (?:توقف|توقفوا|توقفو|تتوقفوا|تتوقف|تلغوا|تلغي|تلغ)",
                r"(?:اوقف|وقفت|اوقفت|بوقف|توقف|وقف) (?:ال)?(?:دواء|دوا|ادويه|حبوب|اكل|انسولين)",
            ),
        ),
        ("opt_out", 0.8, (r"(?:رقم|الرقم) (?:غلط|خطا|خاطئ)",)),  # "wrong number", as in English (0.8)
        (
            "opt_out",
            0.95,
            (
                r"عدم (?:ارسال|الارسال|مراسلتي|الاتصال بي)",
                r"(?:ازاله|احذفوا|احذف|امسحوا|شيلوا|حذف|شطب) (?:\w+ )?(?:رقمي|اسمي)",
                r"(?:ما|مش|مو) (?:بدي|بدنا|ابغي|ابي|اريد|عايز|عاوز)"
                r" (?:\w+ )?(?:رسائل|الرسائل|رسايل|مسجات|رساله)",
            ),
        ),
        (
            "opt_out",
            0.95,
            (
                "توقف",
                "توقفوا",
                "اوقف",
                "اوقفوا",
                r"ايقاف(?: \w+)?",
                "ستوب",
                r"لا (?:\w+ ){0,2}?(?:رسائل|رساله|الرسائل|مسجات|رسايل)",
                r"لا (?:ترسل|ترسلوا|ترسلي|تبعت|تبعتوا|تراسلني|تراسلوني|تتصل|تتصلوا)(?: \w+)?",
                r"كفى(?: \w+)?",
                r"كفايه(?: \w+)?",
                r"الغاء الاشتراك(?: \w+)?",
                r"الغاء (?:الرسائل|الاشعارات)",
                r"بدون رسائل",
            ),
        ),
        (
            "opt_in",
            0.9,
            (
                r"(?:\w+ ){0,3}?الرسائل (?:مره|من) (?:اخري|ثانيه|جديد)",
                r"اعاده الاشتراك",
                r"رسائل (?:مره|من) (?:اخري|ثانيه|جديد)",
            ),
        ),
        (
            "help",
            0.9,
            (
                "من انت",
                "من انتم",
                "من هذا",
                "من هذه",
                "من معي",
                "مين انت",
                "مين معي",
                "مين حضرتك",
                "من حضرتك",
            ),
        ),
        (
            "cancel",
            0.9,
            (
                r"الغاء(?: \w+)?",
                "لن احضر",
                "لن اتي",
                r"لا (?:استطيع|اقدر|يمكنني) (?:الحضور|المجيء|المجي|الذهاب|القدوم|اجي|احضر)",
                r"(?:مش|ما) (?:قادر|قادره|اقدر) (?:اجي|احضر)",
            ),
        ),
        (
            "reschedule",
            0.9,
            (
                r"(?:تغيير|تعديل|تاجيل|نقل) (?:\w+ )?(?:الموعد|موعد|الوقت|الحجز)",
                "تاجيل",
                r"موعد (?:اخر|ثاني|اخري|يوم)",
                r"(?:يوم|وقت) (?:اخر|ثاني)",
                "ممكن موعد",
            ),
        ),
        (
            "opt_in",
            0.9,
            (
                r"اعاده تفعيل",
                r"تفعيل (?:\w+ )?(?:الرسائل|التذكيرات|رسائل)",
                r"(?:الرسائل|التذكيرات|رسائل|تذكيرات) (?:مره|من) (?:اخري|ثانيه|جديد)",
            ),
        ),
        (
            "help",
            0.9,
            (
                r"ما (?:هذه|هذا|هذي)",
                r"شو (?:هاد|هذا|هاي)",
                r"(?:لم|ما|مش|مو|لا) (?:افهم|فاهم|فاهمه|فهمت)",
            ),
        ),
        (
            "cancel",
            0.9,
            (
                r"(?:الغ|الغي|الغوا)",
                r"لن (?:اتمكن|استطيع|اقدر|يمكنني)(?: من)? (?:الحضور|المجيء|المجي|القدوم|الذهاب)",
            ),
        ),
        (
            "reschedule",
            0.9,
            (
                r"موعدا (?:اخر|ثاني|اخري)",
                r"(?:ناجل|نوجل|يوجل|اوجل|اجلوا|تاجل|اجل) (?:\w+ )?(?:الموعد|موعد|الحجز)",
            ),
        ),
        (
            "confirm",
            0.9,
            (
                "نعم",
                "ايوه",
                "ايوا",
                "اكيد",
                "تمام",
                "موافق",
                "موافقه",
                "حاضر",
                "ساحضر",
                "ساتي",
                "سنحضر",
                "ساكون هناك",
                "رح (?:تجي|يجي|اجي|نجي)",
                "(?:بجيبها|بجيبه|رح جيبها|رح جيبه)",
                "اوكي",
                "ان شاء الله",
                "انشاء الله",
                "انشالله",
            ),
        ),
        ("confirm", 0.65, ("شكرا", "شكراً")),
        # Arabizi (Arabic in Latin letters): "msh ha2dar aagi, el8i el ma3ad", "momken ne2ajel el maw3ed?"
        (
            "help",
            0.9,
            (r"(?:meen|min|mn) (?:enta|inta|anta|ento|into|antum|hada|hayda|ma3i)",),
        ),
        (
            "cancel",
            0.9,
            (
                r"(?:msh|mish|mesh|mush|ma|mo) (?:ha2dar|2ader|2adar|ba2der|a2dar|a2der|2dar|adar|ader) "
                r"(?:aji|aagi|eje|ajy|aaji|a7dar|a7der|a7daar|ago|agi)",
                # "la2 ma ra7 ejee": "no, I won't come" (ra7 / ha: the future)
                r"(?:msh|mish|mesh|mush|ma|mo) (?:ra7|rah|ha|7a) "
                r"(?:aji|eje|ejee|ajee|ije|ijee|ajy|aagi|a7dar|a7der)",
                r"(?:el8i|elghi|ilghi|alghi|2lghi|el8oo|elghoo|ilghu)",
            ),
        ),
        (
            "reschedule",
            0.9,
            (
                r"(?:momken|mumkin|mumken|momkin) (?:\w+ )?(?:n2a5ar|na2ajjel|ne2ajel|n2ajel|nae5er|ne8ayar|"
                r"n8ayer|ne8ayer|nghayer|a8ayer|aghayer|ng8ayer|maw3ed|ma3ad|mawed)",
                r"(?:yom|maw3ed|ma3ad|wa2t|sa3a) (?:tany|tani|tanya|tanyeh|akhar|e5er)",
            ),
        ),
        (
            "confirm",
            0.9,
            ("aywa", "aiwa", "na3am", "tamam", "inshallah", "insha2allah", "inshalla", "akid", "akeed"),
        ),
    ),
)

_EL = Lexicon(
    "el",
    True,
    (
        (
            "keep",
            0.8,
            (
                r"μη(?:ν)? (?:σταματ\w*|ακυρωσ\w*)",
                r"σταματ\w* (?:\w+ )?(?:τα |το |την |τις )?"
                r"(?:φαρμακ\w*|χαπι\w*|αγωγη|φαγητο|τροφη|ινσουλινη|αντιπηκτικ\w*|ασπιριν\w*)",
                r"σταματ\w* (?:\w+ )?(?:το |τα )?(?:λεωφορει\w*|τρενο|τραμ)",  # "does the bus stop in front?"
                r"σταματ\w* (?:η|ο) \w+",  # "σταμάτησε η αιμορραγία": something that stopped (our texts: τα)
                r"(?:η|ο) \w+ σταματ\w*",  # "ο πόνος σταμάτησε μόνος του"
            ),
        ),
        (
            "opt_out",
            0.95,
            (r"δεν θελω (?:\w+ ){0,3}?(?:μηνυματα|μηνυμα|sms|υπενθυμισεις|μυνηματα)",),
        ),
        (
            "opt_out",
            0.95,
            (
                r"σταματ\w*",
                "στοπ",
                r"μη(?:ν)? (?:μου )?(?:ξανα)?(?:στελνετε|στελνεις|στειλετε|στειλεις|γραφετε|γραψετε)",
                r"(?:κανενα|οχι αλλο|οχι αλλα) (?:\w+ )?(?:μηνυμα|μηνυματα|sms)",
                r"δεν θελω (?:\w+ ){0,2}?μηνυματα",
                r"(?:φτανει|φτανουν|αρκετα) (?:\w+ ){0,2}?μηνυματα",
                r"διαγραφ\w*",
                r"αφαιρεστε με",
                r"μη(?:ν)? (?:\w+ )?(?:ξανα)?(?:επικοινων|ενοχλ)\w*",  # do not contact / bother me (again)
                # "δεν χρειάζεται να επικοινωνείτε πια μαζί μου": no need to contact me
                r"δεν χρειαζεται (?:να )?(?:μου |με )?(?:ξανα)?(?:επικοινων|ενοχλ|στελν|γραφ)\w*",
            ),
        ),
        ("opt_in", 0.9, (r"(?:θελω|ξεκινηστε) (?:\w+ ){0,3}?ξανα", r"μηνυματα ξανα")),
        (
            "help",
            0.9,
            (
                r"ποιος (?:ειναι|ειστε|στελνει)",
                r"ποιοι ειστε",
                r"ποια ειναι",
                r"απο που (?:εχετε|πηρατε|βρηκατε) (?:το |τον )?(?:τηλεφωνο|αριθμο|νουμερο) μου",
                r"(?:πως|pws|pos) (?:βρηκατε|vrikate|vrhkate|πηρατε|pirate) (?:το |to )?"
                r"(?:νουμερο|αριθμο|τηλεφωνο|noumero|arithmo|tilefono|thlefwno) (?:μου|mou)",
            ),
        ),
        (
            "cancel",
            0.9,
            (
                r"ακυρ\w*",
                r"δεν (?:θα )?(?:μπορω να )?(?:ερθω|ερθουμε|ερχομαι|παρω)",
                r"δεν μπορω",
                r"akyr\w*",
                r"akur\w*",
                r"den (?:tha )?(?:mporo na )?(?:erthw|ertho)",
            ),
        ),
        (
            "reschedule",
            0.9,
            (
                r"αλλαξ\w*",
                r"αλλαγη",
                r"αλλη (?:μερα|ωρα|ημερομηνια|μερα)",
                r"αλλο (?:ραντεβου|πρωι|απογευμα)",
                r"μεταθεσ\w*",
                r"μεταφερ\w*",
                r"metafer\w*",
                r"allag\w* (?:wras|oras|meras|imeras|hmeras)",
                r"υπαρχει (?:κατι|τιποτα|θεση|αλλη ωρα)",
                r"(?:εχετε|εχεις|μηπως εχετε) (?:κατι|τιποτα|θεση) (?:αλλο|αλλη|αλλες|αλλα|αλλιως)",
                r"pio (?:noris|nwris|arga)",
                r"(?:allh|alli|allo) (?:mera|wra|ora|imera)",
                r"αναβολ\w*",
                r"αναβαλ\w*",
            ),
        ),
        (
            "opt_in",
            0.9,
            (
                r"ενεργοποι\w*",
                r"ξανα(?:λαμβ|στελν|στειλ|αρχ)\w*",
            ),
        ),
        (
            "help",
            0.9,
            (
                r"τι (?:ειναι|σημαινει) (?:αυτο|αυτα|αυτη)",
                r"δεν (?:καταλαβαινω|καταλαβα)",  # I (not she: "δεν καταλαβαινει")
            ),
        ),
        (
            "cancel",
            0.9,
            (r"δεν (?:θα )?(?:τα )?(?:καταφερ\w*)",),
        ),
        (
            "confirm",
            0.9,
            (
                "ναι",
                "ενταξει",
                r"θα (?:ειμαι|ειμαστε) εκει",
                r"θα (?:ερθω|ερθουμε)",
                r"επιβεβαιων\w*",
                "βεβαιως",
                "σιγουρα",
                "οκ",
                "nai",
                "entaxei",
                "entaksei",
                r"tha (?:eimai|ime) ekei",
                r"tha (?:erthw|ertho)",
            ),
        ),
        ("confirm", 0.65, ("ευχαριστω", "efxaristo", "eyxaristw")),
    ),
)

# "Sì" / "sí" typed without its accent is "si", which is also Italian's impersonal "si" ("si è fermato") and
# Spanish "if" ("si hace falta"): a yes when it opens the reply (and no verb follows), ends it, or comes with
# another word of agreeing.
_SI_AS_YES = (
    r"(?:(?<! )si(?! (?:e|puo|possono|deve|devono|fa|fanno|era|trova|sente|vede|chiama|tratta|ferm\w*|no"
    r"|es|hace|puedo|puede|pueden|tengo|tiene|hay|necesito|necesita|quieren|quiere)(?: |$))"
    r"|si(?=$| (?:si|grazie|gracias|claro|certo|certamente|ok|okay|va|vale|perfetto|perfecto|por|per|senor"
    r"|senora|signora|signore|dottore|doctor|doctora|muchas|mille|confermo|confirmo|ci|alli|ahi|voy|vengo"
    r"|estare|saro|bene|bien|esta bien|de acuerdo|d accordo)(?: |$)))"
)


_IT = Lexicon(
    "it",
    True,
    (
        (
            "keep",
            0.8,
            (r"non (?:smett\w*|ferm\w*|interromp\w*)",),
        ),
        (
            "opt_out",
            0.95,
            (r"smett\w*(?: \w+){0,3}? (?:messaggi|sms|messaggini)",),
        ),
        (
            "opt_out",
            0.95,
            (
                r"non (?:\w+ ){0,3}?(?:messaggi|sms|messaggini)",
                r"basta (?:\w+ )?(?:messaggi|sms)",
                r"basta(?: cosi| adesso| ora)?$",  # "Chi vi ha dato il mio numero? Basta!": the last word
                # "non c'è bisogno di contattarmi": no need to contact me
                r"non (?:c ?e bisogno di|serve|e necessario) (?:\w+ )?"
                r"(?:contattar|scriver|mandar|messaggiar)\w*",
                r"smett\w* di (?:scriver\w*|mandar\w*|inviar\w*|contattar\w*)",
                r"non (?:mandatemi|inviatemi|scrivetemi|contattatemi)",
                r"non mi (?:mandate|scrivete|inviate|contattate)",
                r"(?:cancellatemi|toglietemi|rimuovetemi|eliminatemi)",
                r"disiscriv\w*",
                r"(?:rimuovete|eliminate|cancellate) il mio numero",
            ),
        ),
        (
            "opt_in",
            0.9,
            (
                r"riattiv\w*",
                r"(?:ricevere|mandatemi|inviatemi) (?:\w+ ){0,2}?(?:di nuovo|ancora|nuovamente)",
                # "mi rimettete nella lista degli sms?": put me back on the list
                r"(?:rimettete|rimettetemi|riaggiungete|riaggiungetemi|reinserite|reinseritemi)(?: \w+){0,4}?"
                r" (?:lista|sms|messaggi|promemoria)",
            ),
        ),
        ("help", 0.9, (r"chi (?:e|siete|sei|scrive|parla|e lei)",)),
        (
            "cancel",
            0.9,
            (
                r"annull\w*",
                r"disdi\w*",
                r"cancell(?:are|o|a|ate)",
                r"non (?:posso|riesco a|potro) (?:venire|esserci|partecipare)",
                "non vengo",
                "non ci saro",
            ),
        ),
        (
            "reschedule",
            0.9,
            (
                r"spost\w*",
                r"cambi\w* (?:\w+ )?l?(?:giorno|orario|ora|data|appuntamento)",
                r"rimand\w*",
                r"(?:un )?altro (?:giorno|orario)",
                r"altra (?:data|ora)",
                "posticip\\w*",
            ),
        ),
        (
            "help",
            0.9,
            (
                r"non (?:capisco|ho capito)",
                r"(?:cose|cosa e|che cose|che cosa e|cos e) (?:questo|questa|sto|sta)",
                r"(?:cosa|che) significa",
            ),
        ),
        (
            "reschedule",
            0.9,
            (r"piu (?:tardi|presto)", r"anticip\w*"),
        ),
        (
            "confirm",
            0.9,
            (
                _SI_AS_YES,
                "certo",
                r"conferm\w*",
                "va bene",
                "ci saro",
                "ci saremo",
                "perfetto",
                "vengo",
                "d accordo",
                "daccordo",
                r"verr(?:a|o|emo)",
                r"(?:la|lo) accompagno",
            ),
        ),
        ("confirm", 0.65, ("grazie",)),
    ),
)

_ES = Lexicon(
    "es",
    True,
    (
        (
            "keep",
            0.8,
            (
                r"no (?:dejen|deje|dejes|paren|pare|pares) de",
                r"no (?:paren|cancelen)",
            ),
        ),
        (
            "opt_out",
            0.95,
            (
                r"no (?:me |nos )?(?:vuelvan|vuelva|vuelvas) a"
                r" (?:escribir\w*|mandar\w*|enviar\w*|contactar\w*)",
                r"(?:borr|elimin|quit|sac)\w*(?:me|nos) de (?:la |su |sus |tu )?listas?",
            ),
        ),
        (
            "opt_out",
            0.95,
            (
                r"no (?:me |nos )?(?:manden|envien|mande|envie|escriban|contacten|mandes|envies|escribas)",
                r"dej\w* de (?:escribir\w*|mandar\w*|enviar\w*|contactar\w*|molestar\w*)",
                r"(?:no|ya no) (?:quiero|deseo) (?:\w+ ){0,4}?"
                r"(?:mensajes?|sms|recordatorios?|textos?|comunicaciones)",
                r"(?:darme|darse|dar|dame|denme) de baja",
                r"(?:basta|nada) de (?:mensajes|sms|textos|recordatorios)",
                r"no hace falta que (?:me |nos )?(?:escriban|manden|envien|contacten|sigan)\w*",
                r"paren (?:\w+ )?(?:mensajes|sms)",
                r"ya no me (?:escriban|manden|envien|contacten)",
                r"no mas (?:mensajes|sms|recordatorios)",
                r"(?:cancelar|cancelen|eliminen|borren) (?:\w+ )?(?:mensajes|sms|suscripcion|mi numero)",
            ),
        ),
        ("opt_out", 0.9, (_bare("baja", fillers="por|favor|gracias"),)),
        (
            "opt_in",
            0.9,
            (
                r"reactiv\w*",
                r"(?:recibir|mandar|enviar) (?:\w+ ){0,2}?(?:otra vez|de nuevo|nuevamente)",
                r"volver a recibir",
            ),
        ),
        (
            "help",
            0.9,
            (r"quien (?:es|habla|me escribe|escribe|eres|son)", r"quienes (?:son|es)", r"de parte de quien"),
        ),
        (
            "cancel",
            0.9,
            (
                r"cancel\w*",
                r"anul\w*",
                r"no (?:puedo|podre|voy a poder|podemos) (?:ir|asistir|llegar|venir)",
                r"no (?:voy|vamos) a (?:ir|asistir)",
                r"no (?:voy|vamos|asistire)",
                # "Ya me hice el estudio en el hospital, no lo necesito"
                r"(?:ya )?no (?:lo |la )?(?:necesito|necesitare|hace falta)",
            ),
        ),
        (
            "reschedule",
            0.9,
            (
                r"(?:cambiar|mover|pasar) (?:\w+ )?(?:la )?(?:cita|hora|fecha|dia|turno)",
                r"mover\w*",
                r"reprogram\w*",
                r"pospon\w*",
                r"otr[oa] (?:dia|hora|fecha|turno)",
                r"se puede mover",
                r"(?:lo|la|me lo|me la) (?:pueden|puede|podrian|podria) (?:pasar|cambiar|mover)",
            ),
        ),
        (
            "help",
            0.9,
            (
                r"no (?:lo )?entiendo",
                r"que es (?:esto|este|esta)",
                r"que significa",
            ),
        ),
        (
            "reschedule",
            0.9,
            (
                r"cambiar(?:la|lo)? (?:para|a|al)",
                r"hay (?:algo|otr[oa]|disponib\w*|lugar|turno|hueco|espacio)",
                r"semana (?:que viene|proxima)",
                r"proxima semana",
            ),
        ),
        (
            "confirm",
            0.9,
            (
                _SI_AS_YES,
                "claro",
                "vale",
                r"confirm\w*",
                r"(?:ahi|alli|aqui) (?:estare|estaremos)",
                "perfecto",
                "de acuerdo",
                "nos vemos",
                "si voy",
                "ahi nos vemos",
            ),
        ),
        ("confirm", 0.65, ("gracias",)),
    ),
)

_TL = Lexicon(
    "tl",
    True,
    (
        (
            "keep",
            0.8,
            (
                r"(?:wag|huwag) (?:(?:nyo|niyo|ninyo|mo|po|pong|nyong|niyong|naman|sana) ){0,3}"
                r"(?:itigil|ititigil|tigilan|ihinto)",
                r"(?:itigil|ihinto|tigil) (?:ko |ba |na )*(?:ang |yung |ung )?"
                r"(?:gamot|pagkain|pag inom|kain|inom)",
            ),
        ),
        ("opt_out", 0.8, (r"maling (?:number|numero|tao)",)),  # "wrong number / person", as in English
        (
            "opt_out",
            0.95,
            (
                r"(?:pakitanggal|tanggalin|alisin|pakialis|paki alis|paki tanggal|tanggal)"
                r"(?: \w+){0,3}? (?:listahan|list|number|numero)",
            ),
        ),
        (
            "opt_out",
            0.95,
            (
                r"(?:wag|huwag|pakitigil|tigilan|tigil|itigil|ayoko|ayaw) (?:\w+ ){0,6}?"
                r"(?:text|texts|mag text|magtext|i text|itext|padalhan|mensahe|message|messages|msg|sms|txt)",
                r"(?:pakitigil|itigil)(?: \w+)*",
                # "di nyo na ako kailangang i-contact": you need not contact me any more
                r"(?:di|hindi) (?:\w+ ){0,3}?(?:kailangang|kailangan) (?:na )?(?:i )?"
                r"(?:contact|text|itext|tawagan|padalhan|message|imessage)",
                # "Tama na ang reminders": enough of them
                r"tama na (?:po )?(?:ang |sa |yung |mga |ang mga |sa mga )?"
                r"(?:reminders?|texts?|mensahe|messages?|msgs?|sms|paalala|txt)",
            ),
        ),
        (
            "opt_in",
            0.9,
            (r"(?:gusto|pwede) (?:\w+ ){0,3}?(?:ulit|muli) (?:\w+ ){0,3}?(?:text|mensahe|makatanggap)",),
        ),
        ("help", 0.9, (r"sino (?:po )?(?:ito|to|kayo|ka|ba ito|ba to|ba kayo|po ba ito|po sila)",)),
        (
            "cancel",
            0.9,
            (
                r"hindi (?:\w+ ){0,3}?"
                r"(?:makakapunta|makakarating|tutuloy|makapunta|pupunta|darating|makakadalo)",
                r"kansel\w*",
                r"di (?:\w+ ){0,2}?(?:makakapunta|makakarating|tutuloy|makapunta)",
            ),
        ),
        (
            "reschedule",
            0.9,
            (
                r"ilipat",
                r"(?:pa)?agahan",
                r"mas (?:maaga|late|huli)",
                r"lipat\w*",
                r"palitan (?:\w+ )?(?:oras|araw|petsa|schedule)",
                r"ibang (?:araw|oras|petsa)",
            ),
        ),
        (
            "opt_in",
            0.9,
            (r"(?:pakibalik|ibalik|ibabalik)(?: \w+){0,3}? (?:reminders?|texts?|mensahe|sms|messages?)",),
        ),
        (
            "help",
            0.9,
            (
                r"^ano (?:po )?(?:ba )?(?:ito|to|yan|iyan)$",
                r"(?:di|hindi) ko (?:po )?(?:maintindihan|naiintindihan|gets)",
            ),
        ),
        (
            "reschedule",
            0.9,
            (
                r"(?:hapon|umaga|tanghali|gabi|lunes|martes|miyerkules|huwebes|biyernes|sabado|bukas)"
                r" na lang",
                # "May hapon po ba kayo?": do you have an afternoon (another time)?
                r"may (?:\w+ )?(?:hapon|umaga|tanghali|gabi|bakante|slot|ibang oras|ibang araw)"
                r"(?: \w+)?(?: po)? ba",
            ),
        ),
        (
            "confirm",
            0.9,
            (
                "oo",
                "opo",
                "sige",
                "pupunta",
                "darating",
                r"kumpirm\w*",
                "makakarating",
                "makakapunta",
                "oo naman",
            ),
        ),
        ("confirm", 0.65, ("salamat",)),
    ),
)

_VI = Lexicon(
    "vi",
    True,
    (
        (
            "keep",
            0.8,
            (
                r"dung (?:co )?(?:ngung|dung|ngat|huy)",  # "đừng ngừng": don't stop (đừng, dừng fold alike)
                r"(?:ngung|dung) (?:uong |an )?(?:thuoc|an|uong)",  # "stop the medicine / eating"
            ),
        ),
        ("opt_out", 0.8, (r"(?:sai|nham) (?:so|nguoi)",)),  # "wrong number / person", as in English
        (
            "opt_out",
            0.95,
            (
                r"(?:dung|ngung|thoi|ngung) (?:\w+ ){0,1}?(?:nhan|gui|nt|lien lac|sms|tin)",
                r"(?:dung|ngung) lai",
                r"huy dang ky",
                r"(?:khong|ko|k) (?:\w+ ){0,2}?(?:nhan|gui) (?:tin|sms|nt)(?: \w+){0,3}",
                r"(?:khong|ko) (?:muon|can) (?:\w+ ){0,2}?(?:tin nhan|sms)",
                r"(?:khong|ko) can (?:\w+ )?(?:lien lac|lien he|nhan tin|gui tin)",  # "no need to contact me"
            ),
        ),
        ("opt_in", 0.9, (r"(?:nhan|gui) (?:\w+ ){0,2}?lai", "dang ky lai")),
        (
            "help",
            0.9,
            (
                r"^ai(?: \w+)?$",
                "la ai",
                "ai day",
                "ai vay",
                r"ai (?:nhan|gui)",
                r"(?:sao|tai sao|lam sao|o dau) (?:\w+ ){0,2}?(?:co|biet|lay duoc|lay) so "
                r"(?:dien thoai )?(?:cua )?(?:toi|em|minh|tui)",
            ),
        ),
        (
            "cancel",
            0.9,
            (
                r"huy(?: \w+)?",
                r"(?:khong|ko|k) (?:\w+ ){0,1}?(?:den|di|toi|toi) (?:duoc|dc|dk)",
                r"(?:khong|ko) (?:the )?(?:den|di)",
            ),
        ),
        (
            "reschedule",
            0.9,
            (
                r"doi (?:\w+ )?(?:lich|ngay|gio|sang|hen|qua)",
                r"doi lich",
                "hoan",
                r"(?:ngay|gio|hom) khac",
                "doi",
            ),
        ),
        (
            "help",
            0.9,
            (
                r"(?:khong|ko|k) hieu",
                r"la gi",
                r"gi (?:vay|the|day)",
            ),
        ),
        ("other", 0.9, (r"(?:den|toi) tre", r"tre (?:\w+ )?phut")),  # "sẽ đến trễ 10 phút": late, not a yes
        ("confirm", 0.9, ("vang", "da vang", r"(?:toi )?se (?:den|toi|di|co mat)", "xac nhan", "dong y")),
        ("confirm", 0.9, (_bare("co", "duoc", "dc", fillers="a|da|vang|cam on|nhe|ok|roi"),)),
        ("confirm", 0.65, ("cam on",)),
    ),
)

# Romanised "haan" is "yes", and in Punjabi also "(we) are" after a verb ("India ja rahe haan", "main bhul
# jaanda haan"): a yes when it opens the reply or comes with another word of agreeing.
_HAAN_AS_YES = (
    r"(?:(?<! )haan|haan(?= (?:ji|jee|bilkul|theek|thik|pakka|sahi|ok)(?: |$))|(?<=ok )haan|(?<=ji )haan)"
)

_HI_PA_ROMAN = (
    r"(?:msg|msgs|message|messages|sms|masej|mesej|text)"
    r" (?:\w+ )?(?:mat|na|band|nahi|nai) (?:bhejo|bhejiye|bhejna|bhejen|karo|kar|kijiye|chahiye|bhejo ji)",
    r"(?:mat|na) bhej\w*",
    r"(?:msg|msgs|message|messages|sms) band(?: \w+)?",
    r"band karo",
    r"band kar do",
    r"band kijiye",
)
_HI = Lexicon(
    "hi",
    True,
    (
        (
            "keep",
            0.8,
            (
                r"(?:खाना|पीना|दवा|दवाई|दवाइयां|पानी|khana|khaana|peena|pina|dawai|dawa) (?:\w+ )?(?:बंद|band)",
                r"(?:बंद|band) (?:मत|ना|न|mat|na) (?:कर\w*|kar\w*)",
            ),
        ),
        ("opt_out", 0.8, (r"(?:गलत|galat|ghalat) (?:नंबर|number)",)),  # "wrong number", as in English (0.8)
        (
            "opt_out",
            0.95,
            (
                r"(?:मैसेज|मेसेज|संदेश|एसएमएस|सन्देश|message|msg|sms)(?: \w+){0,3}? (?:मत|ना|न) (?:भेज\w*)",
                r"(?:मत|ना) भेज\w*",
                r"भेजना बंद",
                r"(?:मैसेज|मेसेज|संदेश|एसएमएस|सन्देश)(?: \w+){0,2}? (?:बंद|नहीं चाहिए|नहीं)",
                r"बंद (?:करो|करें|कर दो|कर दीजिए|कीजिए|करिए)",
                r"संपर्क (?:न|मत|ना) कर\w*",  # "मुझसे मैसेज से संपर्क न करें": do not contact me
                r"संपर्क (?:करने )?(?:की )?(?:ज़रूरत|जरूरत|आवश्यकता) नहीं",  # no need to contact me
                r"अनसब्सक्राइब",  # "unsubscribe" written in Devanagari
                *_HI_PA_ROMAN,
            ),
        ),
        (
            "opt_in",
            0.9,
            (
                r"(?:फिर से|दोबारा|phir se|dobara)(?: \w+){0,3}? (?:शुरू|भेज\w*|shuru|bhej\w*)",
                r"(?:मैसेज|संदेश) (?:\w+ )?शुरू",
            ),
        ),
        (
            "help",
            0.9,
            (r"(?:आप|तुम) कौन", r"कौन (?:है|हैं|हो)", r"kaun (?:hai|ho|hain|h)", r"(?:aap|tum|ye|yeh) kaun"),
        ),
        (
            "cancel",
            0.9,
            (
                r"रद्द\w*",
                r"कैंसिल\w*",
                r"नहीं (?:आ|आऊँगा|आऊंगा|आऊँगी|आ पाऊँगा|आ पाऊंगा|आ पाऊँगी|आ सकता|आ सकती|आ सकूँगा)(?: \w+)?",
                r"(?:nahi|nahin|nai)"
                r" (?:aa|aaunga|aaungi|aa paunga|aa paungi|aa sakta|aa sakti|aa sakda|aa sakdi)(?: \w+)?",
            ),
        ),
        (
            "reschedule",
            0.9,
            (
                r"(?:समय|टाइम|तारीख|दिन|डेट|time|date|tarikh|din) (?:\w+ )?(?:बदल\w*|change|badal\w*)",
                r"बदल (?:सकते|दीजिए|दो|दें)",
                r"(?:और|दूसरा|दूसरे|कोई और) दिन",
                r"अगले (?:हफ्ते|हफ़्ते|सप्ताह)",
                r"agle (?:hafte|week)",
                r"ke badle",
                r"badal (?:do|dijiye|sakte)",
            ),
        ),
        (
            "opt_in",
            0.9,
            (
                r"(?:wapas|vapas|phir se|dobara|फिर से|दोबारा|वापस)"
                r"(?: \w+){0,2}? (?:chalu|shuru|start|चालू|शुरू)",
                r"chalu (?:karo|kar do|kijiye)",
                r"चालू (?:करो|करें|कर दो|कीजिए)",
            ),
        ),
        (
            "help",
            0.9,
            (
                r"samajh (?:nahi|nahin|nai|ni)",
                r"(?:number|नंबर|नम्बर) (?:\w+ ){0,2}?(?:kahan|kaha|कहाँ|कहां) (?:se|से) "
                r"(?:mila|aaya|liya|मिला|आया|लिया)",
                r"समझ नहीं",
                r"(?:ye|yeh|yah) kya hai",
                r"kya hai (?:ye|yeh)",
                r"(?:यह|ये) (?:क्या|कौन सा)",
                r"किस बारे में",
            ),
        ),
        (
            "reschedule",
            0.9,
            (
                r"(?:ki|ke) jagah",
                r"की जगह",
                r"(?:और|दूसरा|दूसरे|कोई और|कोई दूसरा) (?:दिन|समय|टाइम|तारीख)",
            ),
        ),
        (
            "confirm",
            0.9,
            (
                "हाँ",
                "हां",
                "जी हाँ",
                "ठीक है",
                "पक्का",
                r"(?:आऊँगा|आऊंगा|आऊँगी|आऊंगी|आ जाऊँगा|आ जाऊंगा|आ जाऊँगी|आ जाऊंगी)",
                "ज़रूर",
                "जरूर",
                _HAAN_AS_YES,
                r"(?:theek|thik) hai",
                r"(?:aaunga|aaungi|aa jaunga|aa jaungi|aunga)",
                "pakka",
            ),
        ),
        ("confirm", 0.65, ("धन्यवाद", "शुक्रिया", "dhanyavad", "shukriya", "ji", "जी")),
    ),
)

_PA = Lexicon(
    "pa",
    True,
    (
        (
            "keep",
            0.8,
            (
                r"(?:ਖਾਣਾ|ਪੀਣਾ|ਦਵਾਈ|ਦਵਾਈਆਂ|ਪਾਣੀ|ਖਾਣ|khana|khaana|peena|dawai) (?:\w+ )?(?:ਬੰਦ|band)",
                r"(?:ਬੰਦ|band) (?:ਨਾ|ਨ|na|mat) (?:ਕਰ\w*|kar\w*)",
            ),
        ),
        ("opt_out", 0.8, (r"(?:ਗਲਤ|ਗ਼ਲਤ) (?:ਨੰਬਰ|number)",)),  # "wrong number", as in English (0.8)
        (
            "opt_out",
            0.95,
            (r"(?:ਮੈਸੇਜ|ਮੈਸਜ|ਸੁਨੇਹੇ|ਸੁਨੇਹਾ)(?: \w+){0,2}? ਨਹੀਂ (?:ਚਾਹੀਦੇ|ਚਾਹੀਦਾ|ਚਾਹੁੰਦਾ|ਚਾਹੁੰਦੀ|ਚਾਹੁੰਦੇ)",),
        ),
        (
            "opt_out",
            0.95,
            (
                r"(?:ਮੈਸੇਜ|ਮੈਸਜ|ਸੁਨੇਹੇ|ਸੁਨੇਹਾ|ਮੈਸਿਜ|ਐਸਐਮਐਸ|message|msg|sms)(?: \w+){0,3}? (?:ਨਾ|ਨ) ਭੇਜ\w*",
                r"(?:ਨਾ|ਨ) ਭੇਜ\w*",
                r"ਬੰਦ ਕਰ\w*",
                r"ਸੰਪਰਕ (?:ਨਾ|ਨ|ਮਤ) ਕਰ\w*",  # "ਮੈਸੇਜ ਰਾਹੀਂ ਸੰਪਰਕ ਨਾ ਕਰੋ": do not contact me
                r"ਸੰਪਰਕ (?:ਕਰਨ )?(?:ਦੀ )?(?:ਲੋੜ|ਜ਼ਰੂਰਤ|ਜਰੂਰਤ) ਨਹੀਂ",  # no need to contact me
                r"(?:ਮੈਸੇਜ|ਸੁਨੇਹੇ|ਸੁਨੇਹਾ)(?: \w+){0,2}? ਨਹੀਂ ਚਾਹੀਦੇ",
                *_HI_PA_ROMAN,
            ),
        ),
        ("opt_in", 0.9, (r"(?:ਦੁਬਾਰਾ|ਫਿਰ ਤੋਂ|ਮੁੜ)(?: \w+){0,2}? (?:ਸ਼ੁਰੂ|ਭੇਜ\w*)", r"(?:ਮੈਸੇਜ|ਸੁਨੇਹੇ) (?:\w+ )?ਸ਼ੁਰੂ")),
        ("help", 0.9, (r"ਕੌਣ (?:ਹੋ|ਹੈ|ਹਨ)", r"(?:ਤੁਸੀਂ|ਤੁਸੀ) ਕੌਣ", r"kaun (?:hai|ho|hain)", r"tusi kaun")),
        (
            "cancel",
            0.9,
            (
                r"ਰੱਦ\w*",
                r"ਕੈਂਸਲ\w*",
                r"ਨਹੀਂ ਆ (?:ਸਕਦਾ|ਸਕਦੀ|ਸਕਾਂਗਾ|ਸਕਾਂਗੀ|ਸਕਾਂ|ਸਕਦੇ)",
                r"ਨਹੀਂ ਆਵਾਂਗਾ",
                r"ਨਹੀਂ ਆਵਾਂਗੀ",
                r"ਨਹੀਂ ਆਉਣਾ",
                r"(?:nahi|nahin|nai) (?:aa|aavanga|aa sakda|aa sakdi|aa sakanga)(?: \w+)?",
            ),
        ),
        (
            "reschedule",
            0.9,
            (
                r"(?:ਸਮਾਂ|ਟਾਈਮ|ਤਾਰੀਖ|ਦਿਨ|time|tarikh|date) (?:\w+ )?(?:ਬਦਲ\w*|badal\w*|change)",
                r"ਬਦਲ (?:ਸਕਦੇ|ਦਿਓ|ਦੋ)",
                r"ਹੋਰ ਦਿਨ",
                r"ਅਗਲੇ ਹਫ਼ਤੇ",
                r"ਅਗਲੇ ਹਫਤੇ",
                r"badal (?:do|dyo|sakde)",
            ),
        ),
        (
            "opt_in",
            0.9,
            (r"(?:ਦੁਬਾਰਾ|ਫਿਰ ਤੋਂ|ਮੁੜ|dobara|phir se|wapas)(?: \w+){0,2}? (?:ਸ਼ੁਰੂ|shuru|chalu|start)",),
        ),
        (
            "help",
            0.9,
            (
                r"ਸਮਝ ਨਹੀਂ",
                r"ਇਹ ਕੀ (?:ਹੈ|ਮੈਸੇਜ|ਸੁਨੇਹਾ)",
                r"samajh (?:nahi|nahin|nai|ni)",
            ),
        ),
        (
            "reschedule",
            0.9,
            (r"ਹੋਰ (?:ਦਿਨ|ਸਮਾਂ|ਟਾਈਮ|ਤਾਰੀਖ)",),
        ),
        (
            "confirm",
            0.9,
            (
                "ਹਾਂ",
                "ਜੀ ਹਾਂ",
                "ਠੀਕ ਹੈ",
                "ਪੱਕਾ",
                r"ਆਵਾਂਗ\w*",
                r"ਆ ਜਾਵਾਂਗ\w*",
                "ਜ਼ਰੂਰ",
                _HAAN_AS_YES,
                r"(?:theek|thik) hai",
                r"(?:aavanga|aavangi|aa javanga)",
            ),
        ),
        ("confirm", 0.65, ("ਧੰਨਵਾਦ", "ਜੀ", "ji")),
    ),
)

LEXICONS: dict[str, Lexicon] = {
    lexicon.language: lexicon for lexicon in (_ZH, _YUE, _AR, _VI, _PA, _EL, _IT, _HI, _ES, _TL)
}
_OPT_OUT_ONLY = tuple(
    lexicon
    for lexicon in LEXICONS.values()
    if lexicon is not _YUE  # the same cues as Mandarin
)
# Every language's opt-outs (per weight, strongest first) and keep phrases as one alternation each: every
# reply is checked against all of them, and most match none (one search, not one per language).
_ALL_OPT_OUTS = tuple(
    (
        weight,
        _union(cue for lexicon in _OPT_OUT_ONLY for cue in lexicon.opt_outs if cue.weight == weight),
    )
    for weight in sorted({cue.weight for lexicon in _OPT_OUT_ONLY for cue in lexicon.opt_outs}, reverse=True)
)
_ANY_KEEP = _union(cue for lexicon in _OPT_OUT_ONLY for cue in lexicon.keeps)
# All of them at once: one scan tells the ~95 % of replies with none apart (then no weight is looked for).
_ANY_OPT_OUT = _union(cue for lexicon in _OPT_OUT_ONLY for cue in lexicon.opt_outs)


_PUNCTUATED = re.compile(_TOKEN.pattern + r"|[^\w\s]")


def read(raw_tokens: list[str], languages: tuple[str, ...], folded: str = "") -> dict[str, float]:
    """What the reply's own language says, as {intent: weight}; every language's opt-out phrases always."""
    spaced = " ".join(raw_tokens)
    scores: dict[str, float] = {}
    if _ANY_KEEP.search(spaced):
        punctuated = " ".join(_PUNCTUATED.findall(folded)) if folded else spaced
        for lexicon in _OPT_OUT_ONLY:
            spaced, kept = lexicon.unkeep(spaced, punctuated)
            if kept:
                scores["keep"] = 0.8
    for language in languages:
        for intent, weight in LEXICONS[language].read(spaced).items():
            scores[intent] = max(scores.get(intent, 0.0), weight)
    opt_out = 0.0
    if _ANY_OPT_OUT.search(spaced):
        opt_out = next((weight for weight, union in _ALL_OPT_OUTS if union.search(spaced)), 0.0)
    if opt_out:
        scores["opt_out"] = max(scores.get("opt_out", 0.0), opt_out)
    return scores
