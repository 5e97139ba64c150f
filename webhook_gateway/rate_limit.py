"""Requests per client address, with Litestar's rate-limit middleware, on every public route.

The limit is set above what the gateway can ingest (RATE_LIMIT_PER_SECOND), so a provider's burst of genuine
webhooks is never turned away: providers retry a 429, but a refused SendGrid batch or Wix booking would only
arrive late, and nothing is gained by it. A refused request (bad signature, wrong site, forged link: 401,
403, 404) counts RATE_LIMIT_FAILURE_WEIGHT times, so an address sending forgeries is cut off after a few a
second, while it costs the verification work only for those. Counts live in a memory store on one machine,
in Redis (REDIS_URL) when several gateways share the traffic.
"""

from __future__ import annotations

from dataclasses import dataclass
from time import time

from litestar.middleware.rate_limit import DURATION_VALUES, RateLimitConfig, RateLimitMiddleware
from litestar.serialization import encode_json
from litestar.stores.base import Store
from litestar.stores.memory import MemoryStore
from litestar.stores.redis import RedisStore
from litestar.types import Message, Receive, Scope, Send

from models import Settings

STORE = "rate_limit"
PENALISED = frozenset({401, 403, 404})  # refused as not genuine: a signature, a ticket, a link
UNLIMITED = ["/healthz", "/readyz", "/schema"]  # probes and docs


class WeightedRateLimitMiddleware(RateLimitMiddleware):
    """Litestar's middleware, plus: a refused request adds `failure_weight - 1` to its address's count."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        status = 0

        async def watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        await super().__call__(scope, receive, watch)
        weight = getattr(self.config, "failure_weight", 1)
        if status not in PENALISED or weight <= 1:
            return
        app = scope["litestar_app"]
        request = app.request_class(scope)
        if not await self.should_check_request(request):
            return
        store = self.config.get_store_from_app(app)
        key = self.cache_key_from_request(request)
        async with self._lock:
            cached = await self.retrieve_cached_history(key, store)
            cached.history = [int(time())] * (weight - 1) + cached.history
            await store.set(key, encode_json(cached), expires_in=DURATION_VALUES[self.unit])


@dataclass
class WeightedRateLimitConfig(RateLimitConfig):
    failure_weight: int = 1


def rate_limit(settings: Settings) -> tuple[list[object], dict[str, Store]]:
    """The middleware and the store the app needs for the configured limit (none when it is 0)."""
    if settings.rate_limit_per_second <= 0:
        return [], {}
    config = WeightedRateLimitConfig(
        rate_limit=("second", settings.rate_limit_per_second),
        failure_weight=max(1, settings.rate_limit_failure_weight),
        exclude=UNLIMITED,
        middleware_class=WeightedRateLimitMiddleware,
        store=STORE,
    )
    store: Store = (
        RedisStore.with_client(settings.redis_url, namespace="avatar-crm-rate-limit")
        if settings.redis_url
        else MemoryStore()
    )
    return [config.middleware], {STORE: store}
