"""`POST /webhooks/sendgrid/events`: SendGrid's Event Webhook (delivered, open, click, bounce, unsubscribe).

Same order as every route: verify the signature on the raw bytes, parse (a malformed batch is refused with a
reason), commit, then answer. A batch becomes one inbox row per event, deduplicated on `sg_event_id`
(SendGrid says duplicates are common), so a redelivered batch, or one that overlaps an earlier one, adds only
what is new. Every event of the batch is committed before the 200: SendGrid does not resend a batch it got a
2xx for. Unsigned batches are never accepted: an event can suppress a patient's email, so a forged one must
not get in just because the key was not configured. A request without usable signature headers is refused
before its body is read.
"""

from __future__ import annotations

import logging
from typing import Annotated, Literal

import msgspec
from litestar import Controller, Request, post
from litestar.datastructures import State
from litestar.exceptions import ClientException, NotAuthorizedException
from litestar.params import HeaderParameter

from providers import sendgrid_webhooks as sg
from webhook_gateway.errors import UNAUTHORIZED
from webhook_gateway.inbox import accept_many

logger = logging.getLogger(__name__)

SOURCE = "sendgrid"

SignatureHeader = Annotated[str | None, HeaderParameter(name=sg.SIGNATURE_HEADER, required=False)]
TimestampHeader = Annotated[str | None, HeaderParameter(name=sg.TIMESTAMP_HEADER, required=False)]


class WebhookBatchAck(msgspec.Struct):
    """What a batch came to: `accepted` new events, `duplicate` ones already stored (both may be 0)."""

    status: Literal["accepted", "duplicate", "ignored"]
    accepted: int
    duplicate: int


class SendGridWebhookController(Controller):
    path = "/webhooks/sendgrid"
    tags = ["webhooks"]

    @post(
        "/events",
        status_code=200,
        # SendGrid flushes batches at 768 KB, above the gateway's general limit.
        request_max_body_size=sg.MAX_BODY_BYTES,
        summary="Receive a batch of SendGrid email events (Signed Event Webhook)",
        description=(
            f"A JSON array of events, signed with `{sg.SIGNATURE_HEADER}` and `{sg.TIMESTAMP_HEADER}` "
            "(ECDSA P-256 over timestamp + body; key in `SENDGRID_WEBHOOK_PUBLIC_KEY`). Each event is stored "
            "once per `sg_event_id`; the answer comes after all of them are durably stored."
        ),
    )
    async def events(
        self,
        request: Request,
        state: State,
        signature: SignatureHeader = None,
        timestamp: TimestampHeader = None,
    ) -> WebhookBatchAck:
        settings = state.settings
        tolerance = settings.sendgrid_webhook_tolerance_seconds
        try:  # a request that cannot be signed is refused before its body (up to 1 MiB) is read
            sg.check_headers(timestamp, signature, settings.sendgrid_webhook_public_key, tolerance=tolerance)
        except sg.SendGridSignatureError as exc:
            raise _refused(request, state, exc) from exc
        raw = await request.body()
        events = _verify_and_parse(request, raw, timestamp, signature, state)
        if not events:
            return WebhookBatchAck(status="ignored", accepted=0, duplicate=0)
        stored = await accept_many(
            state, SOURCE, [(event.sg_event_id, event.event, event.to_json()) for event in events]
        )
        accepted = sum(not item.duplicate for item in stored)
        logger.info("sendgrid batch: %s event(s), %s new", len(stored), accepted)
        return WebhookBatchAck(
            status="accepted" if accepted else "duplicate",
            accepted=accepted,
            duplicate=len(stored) - accepted,
        )


def _verify_and_parse(
    request: Request, raw: bytes, timestamp: str | None, signature: str | None, state: State
) -> list[sg.SendGridEvent]:
    settings = state.settings
    try:
        keys = settings.accepted("sendgrid_webhook_public_key") or [None]  # current, then previous in grace
        for index, key in enumerate(keys):
            try:
                sg.verify_signature(
                    raw, timestamp, signature, key, tolerance=settings.sendgrid_webhook_tolerance_seconds
                )
                break
            except sg.SendGridSignatureError:
                if index == len(keys) - 1:
                    raise
        return sg.parse_batch(raw)
    except sg.SendGridSignatureError as exc:
        raise _refused(request, state, exc) from exc
    except sg.SendGridPayloadError as exc:
        state.rejections.refused(request, "sendgrid webhook", f"malformed: {exc}")
        raise ClientException(detail=f"malformed body: {exc}") from exc


def _refused(request: Request, state: State, exc: sg.SendGridSignatureError) -> NotAuthorizedException:
    state.rejections.refused(request, "sendgrid webhook", str(exc))
    return NotAuthorizedException(detail=UNAUTHORIZED)
