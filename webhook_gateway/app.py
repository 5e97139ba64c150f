"""The gateway application factory.

`create_app()` wires the inbox writer, the Prefect client and the dispatcher into the app's lifespan, so a
test, `make up` and a production ASGI server all build exactly the same thing. `create_served_app()` is the
factory an ASGI server runs: the same app, with settings read from the avatar-crm Prefect blocks first.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator, Collection, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager, suppress
from datetime import timedelta

from litestar import Litestar, MediaType, Request, Response
from litestar.openapi import OpenAPIConfig
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR
from prefect.client.orchestration import PrefectClient, get_client
from prefect.settings import PREFECT_API_AUTH_STRING
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from console.app import console
from models import Settings, get_engine, get_settings
from models.data_dir import make_private
from models.keyring import record_keys
from models.log_format import configure_logging, register_log_context
from webhook_gateway.background import BackgroundTask
from webhook_gateway.dead_runs import StuckLimits
from webhook_gateway.dispatcher import Dispatcher
from webhook_gateway.errors import RejectionLog, RequestIdMiddleware, internal_error, request_id
from webhook_gateway.google_oauth import GoogleOAuthController
from webhook_gateway.health import HealthController
from webhook_gateway.inbox import InboxWriter
from webhook_gateway.metrics import PROMETHEUS, MetricsController
from webhook_gateway.mobilemessage import MobileMessageWebhookController
from webhook_gateway.outcomes import OutcomeRecorder
from webhook_gateway.rate_limit import rate_limit
from webhook_gateway.sendgrid import SendGridWebhookController
from webhook_gateway.tracking import TrackingController
from webhook_gateway.wix import WixWebhookController

logger = logging.getLogger(__name__)

# Which deployment turns an inbox row from each source into work.
DEPLOYMENTS: Mapping[str, str] = {
    "wix": "booking-intake/booking-intake",
    "wix-reconcile": "booking-intake/booking-intake",  # bookings `wix-reconcile` found the webhooks missed
    "mobilemessage": "sms-triage/sms-triage",
    "mobilemessage-status": "delivery-receipts/delivery-receipts",
    "sendgrid": "email-events/email-events",
}
# Sources whose flow takes a batch (`event_ids`) instead of one `event_id`: a campaign's delivery receipts
# arrive by the thousand, one per message part.
BATCHED_SOURCES: frozenset[str] = frozenset({"mobilemessage-status", "sendgrid"})
# A run per booking event while they trickle in; runs of DISPATCH_BACKLOG_BATCH when a backlog builds.
BATCHED_IN_BACKLOG: frozenset[str] = frozenset({"wix", "wix-reconcile"})


@contextmanager
def startup_heap_frozen() -> Iterator[None]:
    """Keep what the gateway built at startup out of the garbage collector's full collections.

    Imports (Prefect, Litestar, SQLAlchemy, pydantic) leave ~200,000 objects that live as long as the
    process; every full collection walked all of them while holding the GIL, 136 ms on this machine, and
    every request in flight waited it out: that was the gateway's long p99 at 64 concurrent requests
    (140-187 ms against 54-62 ms with them frozen, benchmarks/gateway_ingest.py in alternating runs).
    Startup leaves next to no garbage to be kept with them (57 unreachable objects, measured), so no
    collection runs first (it would cost those 136 ms again); they are handed back on shutdown.
    """
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def note_keys_in_use(settings: Settings, engine: Engine) -> None:
    """Record the keys and secrets this gateway runs with, so their ages count from their first use
    (`avatar-crm keys status`). Stops the gateway only if the blind-index key is not the one the stored
    hashes were made with (models/keyring.py: every lookup would miss, suppressions included)."""
    try:
        record_keys(settings, engine)
    except SQLAlchemyError as error:
        logger.warning(
            "could not record the keys in use (%s): run `avatar-crm db upgrade`", type(error).__name__
        )


def create_served_app() -> Litestar:
    """The app with its secrets from Prefect blocks (above the environment), as `make up` and `uvicorn
    --factory webhook_gateway.app:create_served_app` run it; with no Prefect API answering at start-up it
    serves with the environment's settings and says so (webhooks are still stored, and handed over later)."""
    from blocks.settings_source import install

    install()
    return create_app()


def _background_tasks(settings: Settings) -> dict[str, BackgroundTask]:
    """The booking task for lone Wix booking events, where task workers are in use (BOOKING_TASK_WORKERS)."""
    if not settings.booking_task_workers:
        return {}
    from flows.booking_intake import booking_intake_task  # the flows' imports only where they are used

    return {"wix": BackgroundTask(booking_intake_task)}


def create_app(
    settings: Settings | None = None,
    *,
    prefect_api_url: str | None = None,
    deployments: Mapping[str, str] = DEPLOYMENTS,
    batched: Collection[str] = BATCHED_SOURCES,
) -> Litestar:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        make_private(settings.crm_data_dir, settings.crm_database_url)  # however the gateway was started
        engine = get_engine(settings.crm_database_url)
        note_keys_in_use(settings, engine)
        inbox = InboxWriter(engine)
        inbox.start()
        outcomes = OutcomeRecorder(engine)
        outcomes.start()
        client = (
            PrefectClient(api=prefect_api_url, auth_string=PREFECT_API_AUTH_STRING.value())
            if prefect_api_url
            else get_client()
        )
        try:
            async with client:
                dispatcher = Dispatcher(
                    engine,
                    client,
                    deployments,
                    poll_seconds=settings.dispatch_poll_seconds,
                    max_backoff_seconds=settings.dispatch_max_backoff_seconds,
                    batched=batched,
                    batched_in_backlog=BATCHED_IN_BACKLOG,
                    backlog_threshold=settings.dispatch_backlog_threshold,
                    backlog_batch=settings.dispatch_backlog_batch,
                    backlog_runs=settings.dispatch_backlog_runs,
                    recovery_seconds=settings.dispatch_recovery_seconds,
                    stuck=StuckLimits(
                        pending=timedelta(seconds=settings.dispatch_stuck_pending_seconds),
                        running=timedelta(seconds=settings.dispatch_stuck_running_seconds),
                        task_running=timedelta(seconds=settings.dispatch_stuck_task_seconds),
                    ),
                    max_runs=settings.dispatch_max_runs,
                    claim_seconds=settings.dispatch_claim_seconds,
                    background=_background_tasks(settings),
                )
                app.state.update(
                    settings=settings,
                    engine=engine,
                    inbox=inbox,
                    dispatcher=dispatcher,
                    prefect=client,
                    rejections=RejectionLog(),
                    outcomes=outcomes,
                )
                task = asyncio.create_task(dispatcher.run_forever(), name="inbox-dispatcher")
                try:
                    with startup_heap_frozen():
                        yield
                finally:
                    task.cancel()
                    with suppress(asyncio.CancelledError):
                        await task
        finally:
            inbox.stop()
            outcomes.stop()

    limits, stores = rate_limit(settings)
    clinic_console = console(settings)
    app = Litestar(
        route_handlers=[
            clinic_console.router,
            WixWebhookController,
            MobileMessageWebhookController,
            SendGridWebhookController,
            GoogleOAuthController,
            HealthController,
            TrackingController,
            MetricsController,
        ],
        lifespan=[lifespan],
        request_max_body_size=settings.gateway_max_body_bytes,
        # Prometheus outside the rate limit, so the 429s it answers are counted too.
        middleware=[RequestIdMiddleware(), PROMETHEUS.middleware, *limits],
        stores={**stores, **clinic_console.stores},
        template_config=clinic_console.template_config,
        # Status 500 catches every exception no route expected (HTTPExceptions keep their own status).
        exception_handlers={
            SQLAlchemyError: _storage_unavailable,
            HTTP_500_INTERNAL_SERVER_ERROR: internal_error,
        },
        openapi_config=OpenAPIConfig(
            title="avatar-crm webhook gateway",
            version="0.1.0",
            description="Verifies provider webhooks, stores them durably, and starts Prefect flow runs.",
        ),
    )
    app.state.console_settings = settings
    # After Litestar has set up its logging (the root's queue handler): the format and ids go on top of it.
    register_log_context("request_id", request_id)
    configure_logging(settings.log_format)
    return app


def _storage_unavailable(request: Request, exc: SQLAlchemyError) -> Response[dict[str, str]]:
    """The event was NOT stored: say so with a retryable status so the provider sends it again."""
    logger.error(
        "storage unavailable for %s [request %s]: %s", request.url.path, request_id(), type(exc).__name__
    )
    return Response(
        {"status": "error", "detail": "storage temporarily unavailable; retry later"},
        status_code=503,
        headers={"Retry-After": "5"},
        media_type=MediaType.JSON,
    )
