"""The SMS reply classifier on the held-out replies: per-intent precision and recall, confusions, and
replies per second in one process, beside a baseline measured in the same run (lower-casing and splitting
the same replies: the least any reader of a reply must do).

    .venv/bin/python benchmarks/sms_classifier.py [--seconds 3] [--set tests/fixtures/<replies>.tsv]

`--set` reports on another labelled file (a new held-out set's first and only run) in the same way.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from messaging.sms_classifier import classify  # noqa: E402
from tests import sms_corpus  # noqa: E402


def rate(replies: list[str], read: Callable[[str], object], seconds: float) -> tuple[float, float]:
    """Replies per second of wall-clock time and of this process's CPU time, passing over the list again and
    again for about `seconds` (on a shared machine the CPU figure is the steadier one)."""
    done, started, cpu = 0, time.perf_counter(), time.process_time()
    while (elapsed := time.perf_counter() - started) < seconds:
        for text in replies:
            read(text)
        done += len(replies)
    return done / elapsed, done / (time.process_time() - cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="per throughput measurement")
    parser.add_argument(
        "--set", type=Path, default=sms_corpus.HELD_OUT, help="labelled replies (default: the held-out set)"
    )
    args = parser.parse_args()
    held_out = sms_corpus.load(args.set)
    languages = len({r.language for r in held_out})
    print(f"held-out replies ({args.set.name}): {len(held_out)} ({languages} languages)")
    print(sms_corpus.evaluate(held_out).text())
    texts = [r.text for r in held_out]
    classify(texts[0])  # the learned model is trained on first use, once per process: not a reply's cost
    baseline, _ = rate(texts, lambda text: text.lower().split(), args.seconds)
    wall, cpu = rate(texts, classify, args.seconds)
    print(
        f"throughput: classify {wall:,.0f} replies/s ({cpu:,.0f}/s of CPU time); "
        f"baseline lower()+split() {baseline:,.0f} replies/s; load average {os.getloadavg()[0]:.1f}"
    )


if __name__ == "__main__":
    main()
