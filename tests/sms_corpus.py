"""The labelled SMS replies and the report the held-out test and `benchmarks/sms_classifier.py` both print:
per-intent precision and recall, confusions.

Training replies (`messaging/training/*.tsv`) are what the rules were tuned on and the learned model reads;
the held-out set (`tests/fixtures/sms_replies_heldout_18.tsv`) was written before any evaluation and is never
tuned on. Each earlier held-out set was tuned on after its first run and moved to the training replies."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from unittest.mock import patch

from messaging import reply_model
from messaging.sms_classifier import Intent, classify

FIXTURES = Path(__file__).resolve().parent / "fixtures"
TRAINING = Path(reply_model.TRAINING)  # what the rules were tuned on and the model learns from
HELD_OUT = FIXTURES / "sms_replies_heldout_18.tsv"  # the newest: sets 4-17 are training replies now


@dataclass(frozen=True)
class Reply:
    intent: Intent
    language: str
    text: str


def training() -> list[Reply]:
    return [reply for path in sorted(TRAINING.glob("*.tsv")) for reply in load(path)]


def load(path: Path) -> list[Reply]:
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            label, language, text = line.split("\t")
            rows.append(Reply(Intent(label), language, text))
    return rows


@dataclass(frozen=True)
class Report:
    total: int
    correct: int
    confusions: Counter[tuple[Intent, Intent]]  # (labelled, read) -> count, mistakes only
    per_intent: dict[Intent, tuple[float, float, int]]  # precision, recall, support
    opt_outs_missed: tuple[tuple[str, Intent], ...] = ()  # (reply, read as)

    @property
    def accuracy(self) -> float:
        return self.correct / self.total

    def text(self) -> str:
        lines = [
            f"{self.correct}/{self.total} correct, accuracy {self.accuracy:.1%}",
            "intent        precision  recall  n",
        ]
        for intent, (precision, recall, support) in self.per_intent.items():
            lines.append(f"{intent:<12}  {precision:9.1%}  {recall:6.1%}  {support}")
        lines.append("confusions (labelled -> read: count):")
        lines += [f"  {gold} -> {read}: {n}" for (gold, read), n in self.confusions.most_common()] or [
            "  none"
        ]
        lines += [f"opt-out missed: {text!r} read as {read}" for text, read in self.opt_outs_missed]
        return "\n".join(lines)


def cross_validate(folds: int) -> Report:
    """Rules plus a model trained without the fold being read, over every training reply (a fixed shuffle)."""
    replies = training()
    random.Random(7).shuffle(replies)
    parts = [replies[i::folds] for i in range(folds)]
    reads: list[Intent] = []
    ordered: list[Reply] = []
    for i, part in enumerate(parts):
        rest = [
            reply_model.Example(r.intent, r.language, r.text)
            for j, p in enumerate(parts)
            if j != i
            for r in p
        ]
        model = reply_model.KINDS[reply_model.DEFAULT_KIND](rest)
        with patch.object(reply_model, "trained", lambda model=model: model):
            reads += [classify(reply.text).intent for reply in part]
        ordered += part
    return _report(ordered, reads)


def evaluate(replies: list[Reply]) -> Report:
    return _report(replies, [classify(reply.text).intent for reply in replies])


def _report(replies: list[Reply], reads: list[Intent]) -> Report:
    pairs = list(zip((reply.intent for reply in replies), reads, strict=True))
    per_intent = {}
    for intent in Intent:
        support = sum(gold is intent for gold, _ in pairs)
        predicted = sum(read is intent for _, read in pairs)
        hits = sum(gold is intent and read is intent for gold, read in pairs)
        per_intent[intent] = (
            hits / predicted if predicted else 1.0,
            hits / support if support else 1.0,
            support,
        )
    confusions = Counter((gold, read) for gold, read in pairs if gold is not read)
    missed = tuple(
        (reply.text, read)
        for reply, read in zip(replies, reads, strict=True)
        if reply.intent is Intent.OPT_OUT and read is not Intent.OPT_OUT
    )
    return Report(len(pairs), len(pairs) - sum(confusions.values()), confusions, per_intent, missed)
