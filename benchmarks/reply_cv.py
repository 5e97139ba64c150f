"""k-fold cross-validation of the SMS reply reader on the training replies (`messaging/training/*.tsv`): the
rules plus a model that never saw the fold it reads, and the model alone. Prints accuracy, per-intent
precision and recall, opt-out recall, replies wrongly read as opt-outs, and the same per training file.

    .venv/bin/python benchmarks/reply_cv.py [--folds 5] [--model nb|linear] [--confusions]

Why a script: every change to the reader (data, model, thresholds) is measured on the same folds (a fixed
shuffle), so the figures in a commit message can be reproduced. The held-out set is never read here.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections import Counter
from pathlib import Path
from unittest.mock import patch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from messaging import reply_model  # noqa: E402
from messaging.sms_classifier import Intent, classify  # noqa: E402


def _report(title: str, gold: list[str], read: list[str]) -> None:
    total = len(gold)
    correct = sum(g == r for g, r in zip(gold, read, strict=True))
    opt_outs = sum(g == Intent.OPT_OUT for g in gold)
    caught = sum(g == r == Intent.OPT_OUT for g, r in zip(gold, read, strict=True))
    false_opt_outs = sum(r == Intent.OPT_OUT and g != Intent.OPT_OUT for g, r in zip(gold, read, strict=True))
    print(
        f"{title}: accuracy {correct}/{total} = {correct / total:.1%}; opt-out recall {caught}/{opt_outs} = "
        f"{caught / max(opt_outs, 1):.1%}; false opt-outs {false_opt_outs}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--model", choices=sorted(reply_model.KINDS), default=reply_model.DEFAULT_KIND)
    parser.add_argument("--confusions", action="store_true", help="list every confusion count")
    parser.add_argument("--misses", type=int, default=0, help="print up to N missed opt-outs / false ones")
    args = parser.parse_args()

    examples = reply_model.load_examples()
    sources = _sources()
    order = list(range(len(examples)))
    random.Random(7).shuffle(order)
    parts = [order[i :: args.folds] for i in range(args.folds)]
    combined: dict[int, str] = {}
    alone: dict[int, str] = {}
    training_seconds = 0.0
    kind = reply_model.KINDS[args.model]
    for i, part in enumerate(parts):
        rest = [examples[j] for p, other in enumerate(parts) if p != i for j in other]
        started = time.perf_counter()
        model = kind(rest)
        training_seconds += time.perf_counter() - started
        with patch.object(reply_model, "trained", lambda model=model: model):
            for j in part:
                combined[j] = classify(examples[j].text).intent.value
                probabilities = model.probabilities(examples[j].text)
                alone[j] = max(probabilities, key=probabilities.__getitem__)
    gold = [e.label for e in examples]
    rules_and_model = [combined[j] for j in range(len(examples))]
    model_only = [alone[j] for j in range(len(examples))]
    print(
        f"{len(examples)} training replies, {args.folds} folds (fixed shuffle), model {args.model}, "
        f"trained in {training_seconds / args.folds:.2f} s a fold on average"
    )
    _report("rules + model", gold, rules_and_model)
    _report("model alone  ", gold, model_only)
    print("intent        precision  recall  n")
    for intent in Intent:
        predicted = sum(r == intent for r in rules_and_model)
        support = sum(g == intent for g in gold)
        hits = sum(g == r == intent for g, r in zip(gold, rules_and_model, strict=True))
        print(f"{intent:<12}  {hits / max(predicted, 1):9.1%}  {hits / max(support, 1):6.1%}  {support}")
    print("per training file (rules + model):")
    for source in sorted(set(sources)):
        idx = [j for j, s in enumerate(sources) if s == source]
        _report(f"  {source}", [gold[j] for j in idx], [rules_and_model[j] for j in idx])
    languages = sorted({e.language for e in examples})
    print("per language (rules + model): " + ", ".join(
        f"{lang} {sum(gold[j] == rules_and_model[j] for j in idx) / len(idx):.0%}"
        for lang in languages
        if (idx := [j for j, e in enumerate(examples) if e.language == lang])
    ))  # fmt: skip
    confusions = Counter((g, r) for g, r in zip(gold, rules_and_model, strict=True) if g != r)
    shown = confusions.most_common() if args.confusions else confusions.most_common(12)
    print("confusions (labelled -> read): " + ", ".join(f"{g} -> {r} {n}" for (g, r), n in shown))
    if args.misses:
        missed = [j for j in range(len(examples)) if gold[j] == "opt_out" != rules_and_model[j]]
        false = [j for j in range(len(examples)) if rules_and_model[j] == "opt_out" != gold[j]]
        for j in missed[: args.misses]:
            print(f"  missed opt-out: {examples[j].text!r} -> {rules_and_model[j]}")
        for j in false[: args.misses]:
            print(f"  false opt-out ({gold[j]}): {examples[j].text!r}")


def _sources() -> list[str]:
    """The training file of each example, in `load_examples` order."""
    names = []
    for path in sorted(reply_model.TRAINING.glob("*.tsv")):
        names += [path.name] * len(reply_model.load_examples([path]))
    return names


if __name__ == "__main__":
    main()
