"""The SendGrid client's retry rules, against the spec-validating fake over real HTTP: what is retried (429
with its Retry-After, 5xx, a connection SendGrid never saw), what is not (other 4xx), and what must be
neither retried nor called failed (no answer after the request went out: SendGrid may have sent it)."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from providers.sendgrid import EmailContent, EmailRecipient, SendGridClient, SendGridError, build_mail
from tests.fakes.sendgrid import FakeSendGrid

KEY = "SG.client-test"


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeSendGrid]:
    with FakeSendGrid(KEY) as server:
        yield server


@pytest.fixture(autouse=True)
def _fresh(fake: FakeSendGrid) -> None:
    fake.reset()
    fake.latency = 0.0


def body(count: int = 2) -> dict:
    return build_mail(
        from_email="news@avatar-imaging.example",
        from_name="Avatar Imaging",
        content=EmailContent(template_id="d-0123456789abcdef0123456789abcdef"),
        recipients=[EmailRecipient(f"p{i}@example.com", None, {"outbox_id": str(i)}) for i in range(count)],
        asm_group_id=42,
    )


def client(url: str, sleeps: list[float], **options: float) -> SendGridClient:
    return SendGridClient(KEY, url, sleep=sleeps.append, base_delay=0.01, **options)  # type: ignore[arg-type]


def test_429_waits_as_long_as_retry_after_says_then_sends_once(fake: FakeSendGrid) -> None:
    fake.script((429, {"errors": [{"field": None, "message": "too many requests"}]}, {"Retry-After": "7"}))
    sleeps: list[float] = []
    assert client(fake.url, sleeps).send(body()).status_code == 202
    assert sleeps == [7.0]
    assert [r["status"] for r in fake.requests] == [429, 202]
    assert len(fake.accepted) == 1


def test_5xx_is_retried_with_backoff_until_it_succeeds_or_attempts_run_out(fake: FakeSendGrid) -> None:
    unavailable = (503, {"errors": [{"field": None, "message": "unavailable"}]}, {})
    fake.script(unavailable, unavailable)
    sleeps: list[float] = []
    assert client(fake.url, sleeps).send(body()).status_code == 202
    assert len(sleeps) == 2 and [r["status"] for r in fake.requests] == [503, 503, 202]

    fake.reset()
    fake.script(*[unavailable] * 3)
    with pytest.raises(SendGridError) as refused:
        client(fake.url, [], max_attempts=3).send(body())
    assert refused.value.retryable and not refused.value.ambiguous
    assert refused.value.attempts == 3 and refused.value.status_code == 503
    assert fake.accepted == []


def test_an_invalid_body_is_refused_once_with_sendgrids_reason(fake: FakeSendGrid) -> None:
    broken = body()
    del broken["from"]
    with pytest.raises(SendGridError) as refused:
        client(fake.url, []).send(broken)
    assert not refused.value.retryable and refused.value.status_code == 400 and refused.value.attempts == 1
    assert "from" in str(refused.value)
    assert len(fake.requests) == 1 and len(fake.invalid) == 1


def test_a_wrong_key_is_permanent(fake: FakeSendGrid) -> None:
    with pytest.raises(SendGridError) as refused:
        SendGridClient("SG.wrong", fake.url, sleep=lambda s: None).send(body())
    assert refused.value.status_code == 401 and not refused.value.retryable
    assert "SG.wrong" not in str(refused.value)  # the key never appears in what we log


def test_a_connection_sendgrid_never_saw_is_retried() -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # nothing listens here once the socket is closed
    sleeps: list[float] = []
    with pytest.raises(SendGridError) as refused:
        client(f"http://127.0.0.1:{port}", sleeps, max_attempts=3).send(body())
    assert refused.value.retryable and not refused.value.ambiguous and len(sleeps) == 2


def test_no_answer_after_the_request_went_out_is_neither_retried_nor_failed(fake: FakeSendGrid) -> None:
    fake.latency = 1.0
    sleeps: list[float] = []
    with pytest.raises(SendGridError) as unknown:
        client(fake.url, sleeps, timeout=0.2).send(body())
    assert unknown.value.ambiguous and not unknown.value.retryable
    assert sleeps == []  # posting again could send every recipient a second copy


def test_a_body_holds_at_most_1000_recipients() -> None:
    assert len(body(1000)["personalizations"]) == 1000
    with pytest.raises(ValueError, match="at most 1000"):
        body(1001)
