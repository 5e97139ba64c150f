"""`/metrics`: Prometheus metrics for machines, with Litestar's Prometheus plugin.

Per route (the path template, so `/t/o/{token:str}` is one series, not one per token), method and status:
request counts, a latency histogram and 5xx counts, from the plugin's middleware; and, read at each scrape,
the inbox backlog (events stored but not yet processed, by status, and the oldest one's age) and the
dispatcher's retries (dispatches Prefect refused, dead runs handed back, failed rounds in a row).

Not public: the route answers 404 while METRICS_TOKEN is unset (as if it were not there) and 401 without
`Authorization: Bearer <METRICS_TOKEN>`; a refused scrape counts against the address's rate limit like a
forged webhook. Nothing in it names a patient: counts, routes and statuses.
"""

from __future__ import annotations

import hmac
from datetime import UTC

from anyio import to_thread
from litestar import Request, Response, get
from litestar.datastructures import State
from litestar.exceptions import NotAuthorizedException, NotFoundException
from litestar.plugins.prometheus import PrometheusConfig, PrometheusController
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Gauge, generate_latest
from sqlalchemy import case, func, select

from models import InboxStatus, Settings, WebhookEvent
from models.types import utcnow

PROMETHEUS = PrometheusConfig(app_name="avatar-crm-gateway", prefix="avatar_crm_gateway", group_path=True)

_INBOX = WebhookEvent.__table__  # type: ignore[attr-defined]
_WAITING = (InboxStatus.RECEIVED, InboxStatus.DISPATCHED)

INBOX_BACKLOG = Gauge(
    "avatar_crm_inbox_backlog", "Inbox events stored and not yet processed or failed, by status", ["status"]
)
INBOX_OLDEST = Gauge(
    "avatar_crm_inbox_backlog_oldest_seconds", "Age of the oldest inbox event not yet processed (0: none)"
)
INBOX_RETRYING = Gauge(
    "avatar_crm_inbox_retrying",
    "Inbox events waiting for another dispatch: Prefect refused one, or a flow run died before finishing it",
)
DISPATCH_RETRIES = Gauge(
    "avatar_crm_dispatcher_retries",
    "Dispatches that failed and were put back to retry, since the gateway started",
)
DISPATCH_REDISPATCHES = Gauge(
    "avatar_crm_dispatcher_redispatches",
    "Events whose flow run died, dispatched again, since the gateway started",
)
DISPATCH_FAILED_ROUNDS = Gauge(
    "avatar_crm_dispatcher_failed_rounds", "Dispatch rounds failed in a row (0: Prefect takes runs)"
)


def authorise(request: Request, settings: Settings) -> None:
    """404 while no token is configured; 401 unless the request carries it as a bearer token."""
    expected = settings.metrics_token.get_secret_value() if settings.metrics_token else ""
    if not expected:
        raise NotFoundException()
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected.encode()):
        raise NotAuthorizedException(
            "a bearer token is required", headers={"WWW-Authenticate": 'Bearer realm="metrics"'}
        )


def _read_inbox(state: State) -> None:
    query = (
        select(
            _INBOX.c.status,
            func.count(),
            func.min(_INBOX.c.received_at),
            func.sum(case((_INBOX.c.dispatch_attempts + _INBOX.c.redispatches > 0, 1), else_=0)),
        )
        .where(_INBOX.c.status.in_(_WAITING))
        .group_by(_INBOX.c.status)
    )
    with state.engine.connect() as connection:
        rows = {
            status: (count, oldest, retrying) for status, count, oldest, retrying in connection.execute(query)
        }
    now = utcnow()
    oldest_ages = []
    for status in _WAITING:
        count, oldest, _ = rows.get(status, (0, None, 0))
        INBOX_BACKLOG.labels(status=status.value).set(count)
        if oldest is not None:
            oldest = oldest.replace(tzinfo=UTC) if oldest.tzinfo is None else oldest  # SQLite: naive UTC
            oldest_ages.append((now - oldest).total_seconds())
    INBOX_OLDEST.set(max(oldest_ages, default=0.0))
    INBOX_RETRYING.set(sum(int(retrying or 0) for _, _, retrying in rows.values()))


class MetricsController(PrometheusController):
    path = "/metrics"

    @get(summary="Prometheus metrics (bearer METRICS_TOKEN)", include_in_schema=False)
    async def get(self, request: Request, state: State) -> Response[bytes]:  # type: ignore[override]
        authorise(request, state.settings)
        await to_thread.run_sync(_read_inbox, state)
        dispatcher = state.dispatcher
        DISPATCH_RETRIES.set(dispatcher.retries)
        DISPATCH_REDISPATCHES.set(dispatcher.redispatches)
        DISPATCH_FAILED_ROUNDS.set(dispatcher.failed_rounds)
        return Response(generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST})
