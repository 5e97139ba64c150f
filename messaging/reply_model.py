"""A reply reader learned from examples: naive Bayes over character n-grams.

Why: phrase rules read the wordings someone wrote down and little else — a fresh set of replies showed "remove
me from your list" missed in language after language. Character n-grams carry what a wording shares with the
labelled ones (a stem, a particle, an inflection, a character pair in Chinese) without a tokenizer per
language, and a multinomial naive Bayes learns from a few thousand examples in a fraction of a second,
explainably (counts, no hidden state) and with no dependency. The classifier asks it only where its rules are
unsure; the rules stay first.

The examples are `training/*.tsv` beside this module (intent, language, reply), shipped with the package: they
are product data, the thing the reader is made of. A held-out set never goes there.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from messaging.sms_languages import fold

TRAINING = Path(__file__).resolve().parent / "training"
_SMOOTHING = 0.1  # additive (Lidstone); chosen on the development replies by cross-validation
_SHORTEST, _LONGEST = 1, 4  # n-gram lengths


@dataclass(frozen=True)
class Example:
    label: str
    language: str
    text: str


def load_examples(paths: Iterable[Path] | None = None) -> list[Example]:
    """The labelled replies in `paths` (default: every `training/*.tsv`), `#` lines being comments."""
    examples = []
    for path in sorted(paths if paths is not None else TRAINING.glob("*.tsv")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip() and not line.startswith("#"):
                label, language, text = line.split("\t")
                examples.append(Example(label, language, text))
    return examples


def features(text: str) -> frozenset[str]:
    """The reply's distinct character n-grams, case and accents folded, spaces collapsed (a word's edges
    count: " stop" is not "nonstop")."""
    padded = f" {' '.join(fold(text).split())} "
    return frozenset(
        padded[start : start + n]
        for n in range(_SHORTEST, _LONGEST + 1)
        for start in range(len(padded) - n + 1)
    )


class ReplyModel:
    """Bernoulli-style counts (each n-gram once per reply) in a multinomial naive Bayes."""

    def __init__(self, examples: Iterable[Example]) -> None:
        counts: dict[str, Counter[str]] = {}
        replies: Counter[str] = Counter()
        for example in examples:
            counts.setdefault(example.label, Counter()).update(features(example.text))
            replies[example.label] += 1
        if not replies:
            raise ValueError("a reply model needs examples")
        vocabulary = set().union(*counts.values())
        total = sum(replies.values())
        self.labels = tuple(sorted(counts))
        self._vocabulary = frozenset(vocabulary)
        self._prior = {label: math.log(replies[label] / total) for label in self.labels}
        # log P(n-gram | label) for seen n-grams, and the floor for an n-gram the label never had.
        self._unseen: dict[str, float] = {}
        self._log_likelihood: dict[str, dict[str, float]] = {}
        for label in self.labels:
            denominator = math.log(sum(counts[label].values()) + _SMOOTHING * len(vocabulary))
            self._unseen[label] = math.log(_SMOOTHING) - denominator
            self._log_likelihood[label] = {
                gram: math.log(count + _SMOOTHING) - denominator for gram, count in counts[label].items()
            }

    def probabilities(self, text: str) -> dict[str, float]:
        """P(label | reply) for every label; n-grams no example had are ignored (they say nothing)."""
        grams = features(text) & self._vocabulary
        scores = {}
        for label in self.labels:
            table, unseen = self._log_likelihood[label], self._unseen[label]
            scores[label] = self._prior[label] + sum(table.get(gram, unseen) for gram in grams)
        top = max(scores.values())
        weights = {label: math.exp(score - top) for label, score in scores.items()}
        total = sum(weights.values())
        return {label: weight / total for label, weight in weights.items()}


@lru_cache(maxsize=1)
def trained() -> ReplyModel:
    """The model learned from the shipped examples, once per process (about a second; on first use only)."""
    return ReplyModel(load_examples())
