"""The MobileMessage client against the fake provider over real HTTP: what it sends, and how it retries."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator
from typing import Any

import pytest

from providers.mobilemessage import MobileMessageClient, MobileMessageError, SmsMessage
from tests.fakes.mobilemessage import TOO_MANY, FakeMobileMessage
from tests.servers import free_port

USER, PASSWORD = "clinic-api", "s3cret-pass"
SENDER = "61400000010"


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeMobileMessage]:
    with FakeMobileMessage(USER, PASSWORD) as server:
        yield server


@pytest.fixture
def provider(fake: FakeMobileMessage) -> FakeMobileMessage:
    fake.reset()
    fake.latency = 0.0
    return fake


class RecordingSleep:
    """Stands in for asyncio.sleep so backoff is observable and the tests stay fast."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


def client(url: str, sleep: RecordingSleep, password: str = PASSWORD, **kwargs: Any) -> MobileMessageClient:
    return MobileMessageClient(url, USER, password, sleep=sleep, **kwargs)


def sms(to: str = "+61412345678", text: str = "Hi Alex, your MRI is booked.") -> SmsMessage:
    return SmsMessage(to=to, message=text, sender=SENDER, custom_ref="bk:1:confirmation")


async def test_sends_the_documented_request_and_reads_the_result(provider: FakeMobileMessage) -> None:
    sleep = RecordingSleep()
    async with client(provider.url, sleep) as mm:
        [result] = await mm.send([sms()], idempotency_key="booking:abc:confirmation:rev1")

    [request] = provider.requests
    assert request["method"] == "POST" and request["path"] == "/v1/messages"
    assert (
        request["headers"]["authorization"] == "Basic " + base64.b64encode(b"clinic-api:s3cret-pass").decode()
    )
    assert request["headers"]["idempotency-key"] == "booking:abc:confirmation:rev1"
    assert request["json"] == {
        "enable_unicode": False,
        "messages": [
            {
                "to": "+61412345678",
                "message": "Hi Alex, your MRI is booked.",
                "sender": SENDER,
                "custom_ref": "bk:1:confirmation",
            }
        ],
    }
    [sent] = provider.sent
    assert result.status == "success" and result.message_id == sent["message_id"]
    assert result.custom_ref == "bk:1:confirmation"
    assert sleep.delays == []


async def test_unicode_is_enabled_only_when_the_text_needs_it(provider: FakeMobileMessage) -> None:
    async with client(provider.url, RecordingSleep()) as mm:
        await mm.send([sms(text="Café at 9:00am – see you")], idempotency_key="k-unicode")
    # "é" is GSM-7, the en dash is not.
    assert provider.requests[0]["json"]["enable_unicode"] is True


async def test_503_then_200_retries_with_the_same_key_and_sends_once(provider: FakeMobileMessage) -> None:
    provider.script((503, {"message": "Service temporarily unavailable"}, {}))
    sleep = RecordingSleep()
    async with client(provider.url, sleep) as mm:
        [result] = await mm.send([sms()], idempotency_key="key-503")

    assert [r["status"] for r in provider.requests] == [503, 200]
    assert {r["headers"]["idempotency-key"] for r in provider.requests} == {"key-503"}
    assert result.status == "success" and len(provider.sent) == 1
    assert len(sleep.delays) == 1 and 0 <= sleep.delays[0] <= 0.5


async def test_429_honours_retry_after(provider: FakeMobileMessage) -> None:
    provider.script((429, {"message": TOO_MANY}, {"Retry-After": "7"}))
    sleep = RecordingSleep()
    async with client(provider.url, sleep) as mm:
        await mm.send([sms()], idempotency_key="key-429")
    assert sleep.delays == [7.0]
    assert len(provider.sent) == 1


async def test_an_absurd_retry_after_is_capped(provider: FakeMobileMessage) -> None:
    provider.script((429, {"message": TOO_MANY}, {"Retry-After": "86400"}))
    sleep = RecordingSleep()
    async with client(provider.url, sleep) as mm:
        await mm.send([sms()], idempotency_key="key-429-cap")
    assert sleep.delays == [120.0]


async def test_backoff_grows_and_gives_up_as_retryable(provider: FakeMobileMessage) -> None:
    provider.script(*[(500, {"message": "Server Error"}, {})] * 4)
    sleep = RecordingSleep()
    async with client(provider.url, sleep, max_attempts=4, base_delay=1.0) as mm:
        with pytest.raises(MobileMessageError) as caught:
            await mm.send([sms()], idempotency_key="key-500")
    error = caught.value
    assert error.retryable and error.status_code == 500 and error.attempts == 4
    assert "Server Error" in str(error)
    assert len(sleep.delays) == 3
    for attempt, delay in enumerate(sleep.delays):
        assert 0 <= delay <= 2**attempt  # full jitter under an exponential cap
    assert provider.sent == []


async def test_400_is_not_retried_and_carries_the_reason(provider: FakeMobileMessage) -> None:
    sleep = RecordingSleep()
    async with client(provider.url, sleep) as mm:
        with pytest.raises(MobileMessageError) as caught:
            await mm.send([sms(to="12")], idempotency_key="key-400")
    assert caught.value.status_code == 400 and not caught.value.retryable
    assert "messages.0.to is not a valid phone number" in str(caught.value)
    assert len(provider.requests) == 1 and sleep.delays == []


async def test_bad_credentials_are_401_and_not_retried(provider: FakeMobileMessage) -> None:
    sleep = RecordingSleep()
    async with client(provider.url, sleep, password="wrong") as mm:
        with pytest.raises(MobileMessageError) as caught:
            await mm.send([sms()], idempotency_key="key-401")
    assert caught.value.status_code == 401 and not caught.value.retryable
    assert len(provider.requests) == 1 and provider.sent == []


async def test_a_blocked_recipient_is_reported_not_raised(provider: FakeMobileMessage) -> None:
    provider.block("0412 345 678")
    async with client(provider.url, RecordingSleep()) as mm:
        [result] = await mm.send([sms()], idempotency_key="key-blocked")
    assert result.status == "blocked" and result.message_id is None
    assert provider.sent == []


async def test_a_replayed_key_returns_the_original_result_and_sends_nothing(
    provider: FakeMobileMessage,
) -> None:
    async with client(provider.url, RecordingSleep()) as mm:
        [first] = await mm.send([sms()], idempotency_key="key-replay")
        [again] = await mm.send([sms()], idempotency_key="key-replay")
    assert first == again
    assert len(provider.sent) == 1 and len(provider.requests) == 2


async def test_never_more_than_five_requests_in_flight(provider: FakeMobileMessage) -> None:
    provider.latency = 0.05
    async with client(provider.url, RecordingSleep()) as mm:
        results = await asyncio.gather(
            *(mm.send([sms(text=f"message {i}")], idempotency_key=f"key-c-{i}") for i in range(40))
        )
    assert provider.max_in_flight_seen == 5
    assert not any(r["status"] == 429 for r in provider.requests)
    assert len(provider.sent) == 40 and all(r[0].status == "success" for r in results)


async def test_the_fake_enforces_the_concurrency_limit(provider: FakeMobileMessage) -> None:
    """The check above only means something if a client that ignores the limit would be refused."""
    provider.latency = 0.05
    async with client(provider.url, RecordingSleep(), max_in_flight=20, max_attempts=1) as mm:
        outcomes = await asyncio.gather(
            *(mm.send([sms()], idempotency_key=f"key-x-{i}") for i in range(20)), return_exceptions=True
        )
    refused = [o for o in outcomes if isinstance(o, MobileMessageError)]
    assert refused and all(o.status_code == 429 and o.retryable for o in refused)


async def test_connection_refused_is_retryable() -> None:
    sleep = RecordingSleep()
    async with client(f"http://127.0.0.1:{free_port()}", sleep, max_attempts=3) as mm:
        with pytest.raises(MobileMessageError) as caught:
            await mm.send([sms()], idempotency_key="key-down")
    assert caught.value.retryable and caught.value.status_code is None
    assert "could not reach MobileMessage" in str(caught.value)
    assert len(sleep.delays) == 2


async def test_empty_and_oversized_batches(provider: FakeMobileMessage) -> None:
    async with client(provider.url, RecordingSleep()) as mm:
        assert await mm.send([], idempotency_key="key-empty") == []
        with pytest.raises(ValueError, match="10000"):
            await mm.send([sms()] * 10_001, idempotency_key="key-big")
    assert provider.requests == []
