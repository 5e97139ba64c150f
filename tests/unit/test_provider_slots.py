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
