"""Provider slots keep every process together under a provider's in-flight limit, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import time

import pytest

from messaging.provider_slots import ProviderSlots, SlotTimeoutError
from models import get_engine

pytestmark = pytest.mark.db


async def _peak(slots: ProviderSlots, holders: int, hold_seconds: float) -> int:
    current = peak = 0

    async def one() -> None:
        nonlocal current, peak
        async with slots.hold(max_wait=30):
            current += 1
            peak = max(peak, current)
            await asyncio.sleep(hold_seconds)
            current -= 1

    await asyncio.gather(*(one() for _ in range(holders)))
    return peak


async def test_no_more_holders_than_slots_and_every_waiter_gets_through(database_url: str) -> None:
    slots = ProviderSlots("test-provider", 3, get_engine(database_url))
    assert await _peak(slots, holders=12, hold_seconds=0.05) == 3


async def test_a_saturated_provider_times_out_instead_of_waiting_forever(database_url: str) -> None:
    slots = ProviderSlots("test-saturated", 1, get_engine(database_url))

    async def another_task() -> None:
        async with slots.hold(max_wait=0.3):
            pass

    async with slots.hold():
        started = time.monotonic()
        with pytest.raises(SlotTimeoutError, match="all 1 test-saturated slots busy"):
            await asyncio.create_task(another_task())  # inherits the context, not the slot
        assert time.monotonic() - started < 2
        async with slots.hold(max_wait=0.3):  # the holder itself may nest: it already has the slot
            pass
    async with slots.hold(max_wait=0.3):  # released on exit: free again
        pass


async def test_limits_are_separate_per_provider(database_url: str) -> None:
    engine = get_engine(database_url)
    async with (
        ProviderSlots("provider-a", 1, engine).hold(max_wait=2),
        ProviderSlots("provider-b", 1, engine).hold(max_wait=2),
    ):
        pass


def _hold_in_child(database_url: str, ready: multiprocessing.synchronize.Event) -> None:  # type: ignore[name-defined]
    async def hold() -> None:
        async with ProviderSlots("test-cross-process", 1, get_engine(database_url)).hold():
            ready.set()
            await asyncio.sleep(60)  # killed long before this ends

    asyncio.run(hold())


async def test_another_process_holding_the_slot_blocks_us_and_its_death_frees_it(database_url: str) -> None:
    context = multiprocessing.get_context("spawn")
    ready = context.Event()
    child = context.Process(target=_hold_in_child, args=(database_url, ready), daemon=True)
    child.start()
    try:
        assert await asyncio.to_thread(ready.wait, 60)
        slots = ProviderSlots("test-cross-process", 1, get_engine(database_url))
        with pytest.raises(SlotTimeoutError):
            async with slots.hold(max_wait=0.5):
                pass
    finally:
        os.kill(child.pid, 9)  # type: ignore[arg-type]
        child.join(10)
    # The OS (file lock) or PostgreSQL (the dead session's advisory lock) released it without any cleanup.
    async with slots.hold(max_wait=10):
        pass


def _contend_in_child(
    database_url: str,
    inside: multiprocessing.sharedctypes.Synchronized,  # type: ignore[name-defined]
    peak: multiprocessing.sharedctypes.Synchronized,  # type: ignore[name-defined]
    holds: int,
) -> None:
    """One "host": its own engine and PostgreSQL sessions, several tasks taking the slot in turn."""

    async def one() -> None:
        for _ in range(holds):
            async with ProviderSlots("test-many-processes", 2, get_engine(database_url)).hold(max_wait=60):
                with inside.get_lock():
                    inside.value += 1
                    peak.value = max(peak.value, inside.value)
                await asyncio.sleep(0.02)
                with inside.get_lock():
                    inside.value -= 1

    async def tasks() -> None:
        await asyncio.gather(*(one() for _ in range(3)))

    asyncio.run(tasks())


async def test_processes_sharing_the_database_never_hold_more_slots_than_the_limit(database_url: str) -> None:
    """Four processes of three tasks each, 2 slots: never more than two inside at once, every one served.
    On PostgreSQL the limit is the database's (advisory locks), so it holds for processes on any host."""
    context = multiprocessing.get_context("spawn")
    inside, peak = context.Value("i", 0), context.Value("i", 0)
    children = [
        context.Process(target=_contend_in_child, args=(database_url, inside, peak, 4), daemon=True)
        for _ in range(4)
    ]
    for child in children:
        child.start()
    for child in children:
        await asyncio.to_thread(child.join, 120)
    assert [child.exitcode for child in children] == [0, 0, 0, 0]  # each of the 48 holds got its slot
    assert peak.value == 2 and inside.value == 0
