"""Requests per client address: genuine webhooks always get in, an address sending forgeries is cut off
after a few; probes are never limited; several gateways share the counts through Redis."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import text

from models import Settings, session_scope
from providers.wix_simulator import sign_hmac, simple_event
from tests.servers import ThreadedServer, free_port
from webhook_gateway.app import create_app

pytestmark = pytest.mark.db

URL = "/webhooks/wix/bookings"
SECRET = b"rate-limit-secret"
START = datetime.now(UTC).replace(microsecond=0) + timedelta(days=3)
PER_SECOND, WEIGHT = 300, 30  # an address may send 10 refused requests a second


def _settings(database_url: str, **overrides: object) -> Settings:
    values = {
        "crm_database_url": database_url,
        "wix_webhook_secret": SECRET.decode(),
        "dispatch_poll_seconds": 60.0,
        "rate_limit_per_second": PER_SECOND,
        "rate_limit_failure_weight": WEIGHT,
    }
    return Settings(**{**values, **overrides})  # type: ignore[arg-type]


def _gateway(settings: Settings) -> ThreadedServer:
    return ThreadedServer(create_app(settings, prefect_api_url="http://127.0.0.1:9/api"))


def _stored() -> int:
    with session_scope() as session:
        return int(session.execute(text("SELECT count(*) FROM webhookevent")).scalar_one())


async def _post_all(
    url: str, source: str, bodies: list[bytes], *, forged: bool, concurrency: int
) -> Counter[int]:
    """POST every body from the loopback address `source`, `concurrency` at a time; count the answers."""
    answers: Counter[int] = Counter()
    queue = list(bodies)
    transport = httpx.AsyncHTTPTransport(local_address=source)
    async with httpx.AsyncClient(base_url=url, transport=transport, timeout=30) as client:

        async def worker() -> None:
            while queue:
                body = queue.pop()
                signature = sign_hmac(body, b"not the secret" if forged else SECRET)
                response = await client.post(
                    URL, content=body, headers={"X-Wix-Webhook-Signature": signature}
                )
                answers[response.status_code] += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return answers


def _bodies(n: int) -> list[bytes]:
    return [simple_event("bookings/created", booking_id=str(uuid.uuid4()), start=START) for _ in range(n)]


def test_genuine_webhooks_all_get_in_while_forgeries_from_another_address_are_throttled(db: str) -> None:
    with _gateway(_settings(db)) as gateway:

        async def both() -> tuple[Counter[int], Counter[int], float]:
            genuine = asyncio.create_task(
                _post_all(gateway.url, "127.0.0.1", _bodies(200), forged=False, concurrency=8)
            )
            forged = asyncio.create_task(
                _post_all(gateway.url, "127.0.0.2", _bodies(200), forged=True, concurrency=8)
            )
            async with httpx.AsyncClient(
                transport=httpx.AsyncHTTPTransport(local_address="127.0.0.2")
            ) as probe:
                started = time.monotonic()
                ready = await probe.get(f"{gateway.url}/readyz", timeout=10)  # from the throttled address
                probe_seconds = time.monotonic() - started
            assert ready.status_code in {200, 503}  # answered (Prefect is away here), never 429
            return await genuine, await forged, probe_seconds

        genuine, forged, _ = asyncio.run(both())

    assert genuine == {200: 200}  # all stored, none throttled
    assert _stored() == 200
    assert set(forged) == {401, 429}
    seconds = 10  # generous: the forged requests are spread over at most this many one-second windows
    assert forged[401] <= seconds * PER_SECOND // WEIGHT
    assert forged[429] >= 200 - seconds * PER_SECOND // WEIGHT


def test_an_address_over_the_limit_is_told_when_to_come_back(db: str) -> None:
    with _gateway(_settings(db)) as gateway:
        answers = asyncio.run(_post_all(gateway.url, "127.0.0.3", _bodies(40), forged=True, concurrency=1))
        # Until the limit answers (a one-second window may have turned over since: on a loaded machine it did)
        with httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.3")) as client:
            for _ in range(200):
                throttled = client.post(f"{gateway.url}{URL}", content=b"{}")
                if throttled.status_code == 429:
                    break
    assert answers[429] > 0
    assert throttled.status_code == 429
    assert throttled.headers["RateLimit-Limit"] == str(PER_SECOND)
    assert int(throttled.headers["RateLimit-Reset"]) <= 1


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    server = shutil.which("redis-server")
    if server is None:
        pytest.skip("redis-server is not installed")
    port = free_port()
    process = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        import redis

        client = redis.Redis(port=port)
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                assert time.monotonic() < deadline, "redis did not start"
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.mark.parametrize("shared", [True, False])
def test_two_gateways_share_the_counts_through_redis(db: str, redis_url: str, shared: bool) -> None:
    """Three refused requests a second allowed; six sent, three to each gateway, within one second."""
    settings = _settings(
        db, rate_limit_failure_weight=PER_SECOND // 3, redis_url=redis_url if shared else None
    )
    with _gateway(settings) as one, _gateway(settings) as two:

        async def alternate() -> Counter[int]:
            answers: Counter[int] = Counter()
            for index, body in enumerate(_bodies(6)):
                url = (one if index % 2 else two).url
                answers += await _post_all(url, "127.0.0.4", [body], forged=True, concurrency=1)
            return answers

        time.sleep(1.02 - time.time() % 1)  # counts are kept per wall-clock second: start one
        answers = asyncio.run(alternate())
    assert answers == ({401: 3, 429: 3} if shared else {401: 6})  # alone, each gateway saw only three
