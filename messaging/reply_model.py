"""A reply reader learned from examples: naive Bayes and an averaged perceptron over character n-grams,
their probabilities averaged.

Why: phrase rules read the wordings someone wrote down and little else — a fresh set of replies showed "remove
me from your list" missed in language after language. Character n-grams carry what a wording shares with the
labelled ones (a stem, a particle, an inflection, a character pair in Chinese) without a tokenizer per
language. A multinomial naive Bayes learns from a few thousand examples in a fraction of a second,
explainably (counts, no hidden state); a perceptron (plus words and word pairs) weighs what sets the labels
apart, where NB counts every shared n-gram ("please stop sending messages" / "please send messages again").
They err differently, and their average reads more replies right than either (`benchmarks/reply_cv.py`). Both
are pure Python, learned at first use in about a second, with no dependency. The classifier asks the blend
only where its rules are unsure, and for a likely opt-out; the rules stay first.

The examples are `training/*.tsv` beside this module (intent, language, reply), shipped with the package: they
are product data, the thing the reader is made of. A held-out set never goes there.
"""

from __future__ import annotations

import math
import random
import struct
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from itertools import pairwise
from pathlib import Path

from messaging.sms_languages import fold, words

TRAINING = Path(__file__).resolve().parent / "training"
_SMOOTHING = 0.1  # additive (Lidstone); chosen on the development replies by cross-validation
_LONGEST = 4  # n-grams of 1 to 4 characters
# Naive Bayes counts every n-gram as independent evidence, so its probabilities are near 0 or 1; dividing the
# evidence by 5 makes them mean something (chosen with the thresholds in sms_classifier by cross-validation).
_TEMPERATURE = 5.0
_EPOCHS = 5  # passes of the perceptron over the examples
_MARGIN = 5.0  # the perceptron also learns from a right answer won by less than this
_LINEAR_TEMPERATURE = 12.0


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


def features(text: str, *, folded: str | None = None) -> set[str]:
    """The reply's distinct character n-grams, case and accents folded, spaces collapsed (a word's edges
    count: " stop" is not "nonstop"). `folded`: the reply already folded (the classifier has it)."""
    padded = f" {' '.join((fold(text) if folded is None else folded).split())} "
    grams = set(padded)  # the 1-grams
    for n in range(2, _LONGEST + 1):
        grams.update([padded[start : start + n] for start in range(len(padded) - n + 1)])
    return grams


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
        self._prior = tuple(math.log(replies[label] / total) for label in self.labels)
        self._counts = [counts[label] for label in self.labels]
        self._denominators = [
            math.log(sum(counts[label].values()) + _SMOOTHING * len(vocabulary)) for label in self.labels
        ]
        # Per n-gram, log P(n-gram | label) for every label in `labels` order (the smoothed floor where a
        # label never had it), worked out when a reply first has that n-gram: a flow run's process reads a few
        # replies, and learning all 40,000 rows up front cost it 0.3 s. A reply's scores are column sums.
        self._rows = _Rows(self._counts, self._denominators, frozenset(vocabulary))

    def probabilities(self, text: str, *, folded: str | None = None) -> dict[str, float]:
        """P(label | reply) for every label; n-grams no example had are ignored (they say nothing)."""
        rows = self._rows
        known = [row for gram in features(text, folded=folded) if (row := rows[gram]) is not None]
        columns = zip(*known, strict=True) if known else ((),) * len(self.labels)
        scores = [
            prior + sum(column) / _TEMPERATURE for prior, column in zip(self._prior, columns, strict=True)
        ]
        top = max(scores)
        weights = [math.exp(score - top) for score in scores]
        total = sum(weights)
        return {label: weight / total for label, weight in zip(self.labels, weights, strict=True)}


class _Rows(dict[str, tuple[float, ...] | None]):
    """n-gram -> its row, worked out on first lookup (None for an n-gram no example had)."""

    def __init__(self, counts: list[Counter[str]], denominators: list[float], vocabulary: frozenset[str]):
        super().__init__()
        self._counts, self._denominators, self._vocabulary = counts, denominators, vocabulary

    def __missing__(self, gram: str) -> tuple[float, ...] | None:
        row = None
        if gram in self._vocabulary:
            row = tuple(
                math.log(counts[gram] + _SMOOTHING) - denominator
                for counts, denominator in zip(self._counts, self._denominators, strict=True)
            )
        self[gram] = row
        return row


def linear_features(text: str, *, folded: str | None = None) -> set[str]:
    """The character n-grams of `features` plus the reply's words and word pairs (marked, so a one-letter
    word is not its own 1-gram): a discriminative model can weigh "stop" the word apart from "stop" inside
    "unstop", and "send ... again" as a pair."""
    folded = fold(text) if folded is None else folded
    grams = features(text, folded=folded)
    tokens = words(folded)
    grams.update([f"\x01{token}" for token in tokens])
    grams.update([f"\x02{first} {second}" for first, second in pairwise(tokens)])
    return grams


class LinearReplyModel:
    """A multiclass averaged perceptron (with a margin) over `linear_features`: a discriminative model weighs
    each n-gram by how much it tells the labels apart, where naive Bayes counts every shared n-gram as
    evidence ("please stop sending messages" and "please send messages again" share most of theirs).
    Probabilities are a softmax of the scores divided by a temperature chosen by cross-validation."""

    def __init__(self, examples: Iterable[Example], *, epochs: int = _EPOCHS, seed: int = 0) -> None:
        examples = list(examples)
        if not examples:
            raise ValueError("a reply model needs examples")
        self.labels = tuple(sorted({example.label for example in examples}))
        index = {label: i for i, label in enumerate(self.labels)}
        data = [(sorted(linear_features(example.text)), index[example.label]) for example in examples]
        size = len(self.labels)
        weights: dict[str, list[float]] = {}
        totals: dict[str, list[float]] = {}  # each update times the step it was made at, for the average
        step = 1
        order = list(range(len(data)))
        shuffle = random.Random(seed).shuffle
        for _ in range(epochs):
            shuffle(order)
            for i in order:
                grams, gold = data[i]
                rows = [row for gram in grams if (row := weights.get(gram)) is not None]
                scores = [sum(column) for column in zip(*rows, strict=True)] if rows else [0.0] * size
                right = scores[gold]
                scores[gold] = -math.inf
                wrong = max(range(size), key=scores.__getitem__)
                if right - scores[wrong] <= _MARGIN:
                    for gram in grams:
                        row = weights.get(gram)
                        if row is None:
                            row = weights[gram] = [0.0] * size
                            totals[gram] = [0.0] * size
                        total = totals[gram]
                        row[gold] += 1.0
                        row[wrong] -= 1.0
                        total[gold] += step
                        total[wrong] -= step
                step += 1
        self._weights = {
            gram: tuple(w - t / step for w, t in zip(row, totals[gram], strict=True))
            for gram, row in weights.items()
        }

    def scores(self, text: str, *, folded: str | None = None) -> list[float]:
        weights = self._weights
        grams = linear_features(text, folded=folded)
        rows = [row for gram in grams if (row := weights.get(gram)) is not None]
        return [sum(column) for column in zip(*rows, strict=True)] if rows else [0.0] * len(self.labels)

    def probabilities(self, text: str, *, folded: str | None = None) -> dict[str, float]:
        """P(label | reply) for every label: the scores' softmax at `_LINEAR_TEMPERATURE`."""
        scores = self.scores(text, folded=folded)
        top = max(scores)
        weights = [math.exp((score - top) / _LINEAR_TEMPERATURE) for score in scores]
        total = sum(weights)
        return {label: weight / total for label, weight in zip(self.labels, weights, strict=True)}


class BlendedReplyModel:
    """Both readers, their probabilities averaged. They err differently (naive Bayes counts what a reply
    shares with a label's examples, the perceptron what sets the labels apart): cross-validated (5 folds,
    5,018 replies), naive Bayes alone reads 88.6 % of the training replies right, the perceptron 87.4 %, the
    average 90.0 % (docs/benchmarks.md)."""

    def __init__(self, examples: Iterable[Example]) -> None:
        examples = list(examples)
        self._nb, self._linear = ReplyModel(examples), LinearReplyModel(examples)
        if self._nb.labels != self._linear.labels:  # pragma: no cover - both sort the same labels
            raise ValueError("the two readers disagree on the labels")
        self.labels = self._nb.labels
        # One lookup per n-gram for both readers: its NB row and its perceptron weights side by side, packed
        # in one integer (`_BlendedRows`), so a reply's two score vectors are one C-level `sum` of integers.
        self._rows = _BlendedRows(self._nb._rows, self._linear._weights, len(self.labels))

    def probabilities(self, text: str, *, folded: str | None = None) -> dict[str, float]:
        """The average of the two readers' P(label | reply)."""
        size = len(self.labels)
        sums = self._rows.unpack(sum(map(self._rows.__getitem__, linear_features(text, folded=folded))))
        nb = [prior + total / _TEMPERATURE for prior, total in zip(self._nb._prior, sums, strict=False)]
        linear = [total / _LINEAR_TEMPERATURE for total in sums[size:]]
        first, second = _softmax(nb), _softmax(linear)
        return {label: (a + b) / 2 for label, a, b in zip(self.labels, first, second, strict=True)}


def _softmax(scores: list[float]) -> list[float]:
    top = max(scores)
    weights = [math.exp(score - top) for score in scores]
    total = sum(weights)
    return [weight / total for weight in weights]


# Packed rows: each of a row's 2 x labels numbers in fixed point (scaled by 2**_FRACTION, rounded) in a
# lane of _LANE bits of one Python integer, so that adding the integers adds every lane at once (exactly:
# integers do not round). A value is under 2**10 (log-probabilities are above -20, perceptron weights under
# 30) and a reply has a few hundred n-grams, so a lane's sum stays far inside +-2**(_LANE - 1). Why: summing
# ~125 rows of 14 floats column by column was a third of a reply's reading time.
_FRACTION = 32
_LANE = 64  # `unpack` reads lanes as unsigned 64-bit numbers ("Q")
_LANE_SIGN = 1 << (_LANE - 1)
_LARGEST = 1 << 10  # a value this large would say the training data is not what this was sized for


def _pack(values: tuple[float, ...]) -> int:
    if any(abs(value) >= _LARGEST for value in values):  # pragma: no cover - a guard, not a path
        raise ValueError("a reply-model weight is too large to pack")
    packed = 0
    for lane, value in enumerate(values):
        packed += round(value * (1 << _FRACTION)) << (lane * _LANE)
    return packed


class _BlendedRows(dict[str, int]):
    """n-gram -> its NB row (zeros where NB never saw it) and perceptron weights (zeros likewise), packed
    (`_pack`), on first lookup; 0 where neither has it (it adds nothing)."""

    def __init__(self, nb: _Rows, linear: dict[str, tuple[float, ...]], size: int) -> None:
        super().__init__()
        self._nb, self._linear, self._zeros, self._lanes = nb, linear, (0.0,) * size, 2 * size
        self._layout = struct.Struct(f"<{self._lanes}Q")  # _LANE bits each, little-endian, unsigned
        self._bias = sum(_LANE_SIGN << (lane * _LANE) for lane in range(self._lanes))

    def __missing__(self, gram: str) -> int:
        nb, linear = self._nb[gram], self._linear.get(gram)
        row = 0 if nb is None and linear is None else _pack((nb or self._zeros) + (linear or self._zeros))
        self[gram] = row
        return row

    def unpack(self, packed: int) -> list[float]:
        """A sum of packed rows back to its lanes' sums, lowest lane first. Each lane is biased by half its
        range first (`_BIAS`), so every lane is non-negative and no lane borrows from the one above it: the
        integer's bytes are then the lanes as unsigned 64-bit numbers, read in one C call."""
        biased = (packed + self._bias).to_bytes(self._lanes * _LANE // 8, "little")
        return [(lane - _LANE_SIGN) / (1 << _FRACTION) for lane in self._layout.unpack(biased)]


KINDS: dict[str, type[ReplyModel] | type[LinearReplyModel] | type[BlendedReplyModel]] = {
    "nb": ReplyModel,
    "linear": LinearReplyModel,
    "blend": BlendedReplyModel,
}
DEFAULT_KIND = "blend"


@lru_cache(maxsize=1)
def trained() -> ReplyModel | LinearReplyModel | BlendedReplyModel:
    """The model learned from the shipped examples, once per process, on first use (about 1 s)."""
    return KINDS[DEFAULT_KIND](load_examples())
