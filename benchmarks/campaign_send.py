"""One email campaign to 100,000 consenting patients, through a fake SendGrid that validates every request
against SendGrid's OpenAPI description.

Measures the campaign as the `campaign-send` flow runs it (stream the audience from the database, write one
outbox row per recipient in bulk, claim batches of 1,000 with the suppression and consent re-check, post them
with SENDGRID_MAX_IN_FLIGHT requests in flight, record every result), on a fresh SQLite file, in a process of
its own so its peak memory is its own. The baseline, measured in the same run against the same fake, is a
plain loop posting the same 100 bodies of 1,000 personalizations one at a time with the same client: what
talking to the provider costs with no database at all. The fake runs in its own process too.

Each campaign is a real `campaign-send` flow run against a Prefect server the benchmark starts (its task
runs, events and artifacts included), timed from the call to its return.

Baseline and campaign run alternately `--repeats` times (each campaign on a copy of the same freshly seeded
database); the verdict compares the best of each, the usual reading of timings on a shared machine, where
other tenants only ever add time, and every pair's own ratio is printed beside it. `--compare-with DIR`
also runs the campaign of another checkout (e.g. a `git worktree` of an older commit, with its own
`make install`) in every repeat, alternating which goes first, against the same fake, database copy and
Prefect server: the before/after comparison of a change, same run, same machine.

    .venv/bin/python benchmarks/campaign_send.py [--recipients 100000] [--in-flight 4] [--repeats 3]
        [--compare-with /path/to/other/checkout]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

API_KEY = "SG.bench-key"
TEMPLATE = "d-0123456789abcdef0123456789abcdef"
TARGET_SECONDS, TARGET_MB, TARGET_RATIO = 60.0, 300.0, 0.8
FAKE = """
import sys
from tests.fakes.sendgrid import FakeSendGrid
fake = FakeSendGrid(sys.argv[1]).start()
print(fake.url, flush=True)
for _ in sys.stdin:  # report what this run sent, then forget it: the next run starts on an empty fake
    received = fake.recipients()
    print(len(fake.accepted), len(fake.invalid), len(received), len(set(received)), flush=True)
    fake.reset()
"""
SPEC = {
    "name": "Benchmark recall",
    "channel": "email",
    "variants": [{"template_id": TEMPLATE, "template_data": {"offer": "10% off a follow-up scan"}}],
}


def start_fake() -> tuple[subprocess.Popen[str], str]:
    """The fake SendGrid in a process of its own; a line on its stdin makes it print what it received since
    the last line and forget it, so every run finds it as empty as the first did."""
    fake = subprocess.Popen(
        [sys.executable, "-c", FAKE, API_KEY],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert fake.stdout is not None
    return fake, fake.stdout.readline().strip()


def received(fake: subprocess.Popen[str]) -> tuple[int, int, int, int]:
    """What the fake got since it was last asked: requests accepted, refused by the spec, recipients, and
    distinct recipients."""
    assert fake.stdin is not None and fake.stdout is not None
    fake.stdin.write("report\n")
    fake.stdin.flush()
    accepted, invalid, recipients, unique = map(int, fake.stdout.readline().split())
    return accepted, invalid, recipients, unique


def seed(count: int) -> list[tuple[int, str, str]]:
    """`count` patients with email and marketing consent (the campaign tests' own seed); returns
    (id, email, first name) in id order."""
    from tests.campaign_data import seed as seed_patients

    by_address = seed_patients(count)
    return sorted(
        (cid, address, f"Pat{address.removeprefix('patient').split('@')[0]}")
        for address, cid in by_address.items()
    )


def baseline(url: str, people: list[tuple[int, str, str]]) -> float:
    """The same batches, built beforehand, posted one request at a time: the provider's share."""
    from providers.sendgrid import EmailContent, EmailRecipient, SendGridClient, build_mail

    bodies = []
    for start in range(0, len(people), 1000):
        recipients = [
            EmailRecipient(
                address,
                f"{name} Lee",
                {"outbox_id": str(cid), "campaign": "baseline", "variant": "A"},
                {"offer": "10% off a follow-up scan", "first_name": name, "last_name": "Lee"},
            )
            for cid, address, name in people[start : start + 1000]
        ]
        bodies.append(
            build_mail(
                from_email="news@avatar-imaging.example",
                from_name="Avatar Imaging",
                content=EmailContent(template_id=TEMPLATE),
                recipients=recipients,
                categories=["campaign", "campaign-baseline"],
                asm_group_id=4242,
            )
        )
    client = SendGridClient(API_KEY, url)
    started = time.perf_counter()
    for body in bodies:
        client.send(body)
    return time.perf_counter() - started


def _high_water_mb() -> float:
    """This process's peak resident memory (VmHWM: unlike ru_maxrss, not inherited from the parent)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def campaign_child(repo: Path) -> None:
    """Run the campaign flow of `repo` in this (fresh) process, as a flow run on the benchmark's Prefect
    server; print seconds, peak RSS and outcome as JSON."""
    import asyncio
    import typing

    _use_code_of(repo)
    from flows.campaign_send import campaign_send

    # The spec class the flow of `repo` declares (it moved from flows/ to campaigns/ in the restructuring).
    spec_class = typing.get_type_hints(campaign_send.fn)["spec"]
    spec = spec_class.model_validate(SPEC)
    before_mb = _high_water_mb()
    cpu = time.process_time()
    started = time.perf_counter()
    result = asyncio.run(campaign_send(spec))
    seconds = time.perf_counter() - started
    cpu = time.process_time() - cpu
    peak_mb = _high_water_mb()
    print(
        json.dumps(
            {
                "seconds": seconds,
                "peak_mb": peak_mb,
                "import_mb": before_mb,
                "cpu_seconds": cpu,
                "status": str(result["status"]),
                "counts": result["counts"],
            }
        )
    )


def restore(source_path: Path, target_path: Path) -> None:
    """Copy one SQLite database over another with SQLite's backup API (which copes with the WAL)."""
    source, target = sqlite3.connect(source_path), sqlite3.connect(target_path)
    try:
        source.backup(target)
    finally:
        source.close()
        target.close()


def _use_code_of(repo: Path) -> None:
    """Import the project's packages from `repo` from now on: this script's own imports (the fake) loaded
    some of this checkout's modules, which must not stand in for the other checkout's."""
    sys.path.insert(0, str(repo))
    if repo == REPO:
        return
    ours = str(REPO) + os.sep
    for name, module in list(sys.modules.items()):
        if (getattr(module, "__file__", None) or "").startswith(ours):
            del sys.modules[name]


def seed_child(repo: Path, count: int) -> None:
    """Migrate and seed `CRM_DATABASE_URL` with the code of `repo` (another checkout may store patients in
    another format: its campaign must read a database its own code wrote)."""
    _use_code_of(repo)
    from models.migrate import upgrade
    from tests.campaign_data import seed as seed_patients

    upgrade()
    seed_patients(count)


def seed_other(repo: Path, database: Path, count: int) -> None:
    env = {**os.environ, "CRM_DATABASE_URL": f"sqlite:///{database}"}
    command = [str(repo / ".venv" / "bin" / "python"), __file__, "--seed-child", "--repo", str(repo)]
    subprocess.run([*command, "--recipients", str(count)], env=env, cwd=repo, check=True)


def campaign_run(repo: Path = REPO) -> dict[str, Any] | None:
    """One campaign of `repo`'s code in a fresh process (so its peak memory is its own); None if it failed."""
    python = repo / ".venv" / "bin" / "python"
    child = subprocess.run(
        [str(python if python.exists() else sys.executable), __file__, "--child", "--repo", str(repo)],
        cwd=repo,
        capture_output=True,
        text=True,
        check=False,
    )
    if child.returncode != 0:
        print(child.stderr[-3000:])
        return None
    return json.loads(child.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipients", type=int, default=100_000)
    parser.add_argument("--in-flight", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3, help="baseline/campaign pairs, run alternately")
    parser.add_argument(
        "--compare-with", type=Path, help="another checkout whose campaign alternates with this"
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--seed-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--repo", type=Path, default=REPO, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        campaign_child(args.repo.resolve())
        return 0
    if args.seed_child:
        seed_child(args.repo.resolve(), args.recipients)
        return 0
    with prefect_server() as api_url:
        os.environ["PREFECT_API_URL"] = api_url
        return measure(args)


@contextlib.contextmanager
def prefect_server() -> Iterator[str]:
    """A Prefect server of the benchmark's own (temporary database), for the campaign processes' flow runs."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield str(PREFECT_API_URL.value())


def measure(args: argparse.Namespace) -> int:
    """Seed once, then baseline and campaign(s) alternately; print the figures and the verdict."""
    other: Path | None = args.compare_with.resolve() if args.compare_with else None

    data_dir = Path(tempfile.mkdtemp(prefix="bench-campaign-"))
    database, pristine = data_dir / "crm.db", data_dir / "seeded.db"
    fake, url = start_fake()
    os.environ.update(
        {
            "CRM_DATA_DIR": str(data_dir),
            "CRM_DATABASE_URL": f"sqlite:///{database}",
            "CRM_ENCRYPTION_KEY": "tSJFpnbbGTeAj1QGk0jXrVZr2oDsEW3V3KdxwCdWFNk=",
            "EMAIL_CAMPAIGN_PROVIDER": "sendgrid",
            "SENDGRID_API_KEY": API_KEY,
            "SENDGRID_API_URL": url,
            "SENDGRID_FROM_EMAIL": "news@avatar-imaging.example",
            "SENDGRID_UNSUBSCRIBE_GROUP_ID": "4242",
            "SENDGRID_MAX_IN_FLIGHT": str(args.in_flight),
            "PREFECT_LOGGING_LEVEL": "WARNING",
        }
    )
    try:
        from models.migrate import upgrade

        upgrade()
        started = time.perf_counter()
        people = seed(args.recipients)
        print(f"seeded {args.recipients:,} consenting patients in {time.perf_counter() - started:.1f} s")
        restore(database, pristine)
        pristine_of = {REPO: pristine}
        if other is not None:
            pristine_of[other] = data_dir / "other-seeded.db"
            seed_other(other, pristine_of[other], args.recipients)
            print(f"seeded the same patients with {other.name}'s code (its own storage format)")

        # Alternately, so a slow minute of this shared VM slows both sides, not one; each campaign starts
        # from the same freshly seeded database, and each run of either kind on an empty fake.
        requests = (args.recipients + 999) // 1000
        complete = (requests, 0, args.recipients, args.recipients)  # each patient once, nothing refused
        bases: list[float] = []
        runs: list[dict[str, Any]] = []
        others: list[dict[str, Any]] = []
        wrong: list[str] = []

        def campaign(repo: Path, label: str, repeat: int) -> dict[str, Any] | None:
            restore(pristine_of[repo], database)
            measured = campaign_run(repo)
            if measured is not None and (
                (got := received(fake)) != complete or measured["counts"] != {"sent": args.recipients}
            ):
                wrong.append(f"{label} {repeat + 1}: {got}, counts {measured['counts']}")
            return measured

        for repeat in range(args.repeats):
            bases.append(baseline(url, people))
            if (got := received(fake)) != complete:
                wrong.append(f"baseline {repeat + 1}: {got}")
            # With another checkout: which goes first alternates, so neither always meets a warmer machine.
            order = [(REPO, "campaign"), (other, "other")] if other else [(REPO, "campaign")]
            for repo, label in order if repeat % 2 == 0 else order[::-1]:
                assert repo is not None
                measured = campaign(repo, label, repeat)
                if measured is None:
                    return 1
                (runs if label == "campaign" else others).append(measured)
            line = (
                f"  pair {repeat + 1}: baseline {bases[-1]:6.2f} s, campaign {runs[-1]['seconds']:6.2f} s "
                f"({runs[-1]['cpu_seconds']:.1f} s CPU, peak {runs[-1]['peak_mb']:.0f} MB), "
                f"ratio {bases[-1] / runs[-1]['seconds']:.2f}"
            )
            if other:
                line += (
                    f"; {other.name} {others[-1]['seconds']:6.2f} s ({others[-1]['cpu_seconds']:.1f} s CPU), "
                    f"this / that {runs[-1]['seconds'] / others[-1]['seconds']:.2f}"
                )
            print(line, flush=True)

        base = min(bases)
        best = min(runs, key=lambda run: run["seconds"])
        seconds, peak = best["seconds"], max(run["peak_mb"] for run in runs)
        ratio = base / seconds
        pair_ratios = sorted(b / run["seconds"] for b, run in zip(bases, runs, strict=True))
        print(
            f"baseline: {requests} plain posts of 1,000 (bodies built beforehand), one at a time  "
            f"best {base:6.2f} s  ({args.recipients / base:,.0f}/s)"
        )
        print(
            f"campaign: stream+queue+claim+post+record {args.recipients:,}  best {seconds:6.2f} s "
            f"({args.recipients / seconds:,.0f}/s), {args.in_flight} in flight, "
            f"{best['cpu_seconds']:.1f} s CPU in the campaign process"
        )
        print(f"peak memory of a campaign process: {peak:.0f} MB (after imports: {best['import_mb']:.0f} MB)")
        print(
            f"ratio (best baseline / best campaign): {ratio:.2f}; pair by pair: "
            + ", ".join(f"{r:.2f}" for r in pair_ratios)
        )
        print(
            f"fake SendGrid, every run: {requests} requests accepted, none refused by the spec, "
            f"{args.recipients:,} recipients each once"
            if not wrong
            else "fake SendGrid (accepted, refused, recipients, distinct) differs: " + "; ".join(wrong)
        )
        if other:
            that = min(run["seconds"] for run in others)
            pairs = sorted(run["seconds"] / o["seconds"] for run, o in zip(runs, others, strict=True))
            print(
                f"{other.name}: best {that:6.2f} s; this checkout best {seconds:6.2f} s; "
                f"this / that (best) {seconds / that:.3f}; pair by pair: "
                + ", ".join(f"{r:.2f}" for r in pairs)
            )
        campaign_ok = not wrong
        met = campaign_ok and seconds <= TARGET_SECONDS and peak <= TARGET_MB and ratio >= TARGET_RATIO
        print(
            f"targets ≤ {TARGET_SECONDS:.0f} s, ≤ {TARGET_MB:.0f} MB, ratio ≥ {TARGET_RATIO}: "
            f"{'MET' if met else 'NOT MET'}" + ("" if campaign_ok else " (the campaign's result is wrong)")
        )
        return 0 if campaign_ok else 1
    finally:
        if fake.stdin:
            fake.stdin.close()
        fake.wait(timeout=30)
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
