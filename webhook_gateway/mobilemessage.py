"""`POST /webhooks/mobilemessage/incoming` and `/status`: MobileMessage's inbound-SMS and delivery-receipt
webhooks.

Same order as the Wix route: verify the signature on the raw bytes, parse into a typed event (a malformed body
is refused with a reason), commit to the inbox, then answer. Unsigned webhooks are never accepted: an inbound
SMS can opt a patient out or confirm an appointment, so a forged one must not get in just because the secret
was forgotten.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Annotated, TypeVar

from litestar import Controller, Request, post
from litestar.datastructures import State
from litestar.exceptions import ClientException, NotAuthorizedException
from litestar.params import HeaderParameter

from providers import mobilemessage_webhooks as mm
from webhook_gateway.errors import UNAUTHORIZED
from webhook_gateway.inbox import accept
from webhook_gateway.schemas import WebhookAck

logger = logging.getLogger(__name__)

SOURCE = "mobilemessage"
STATUS_SOURCE = "mobilemessage-status"

_Event = TypeVar("_Event", mm.InboundSms, mm.DeliveryReceipt)

TimestampHeader = Annotated[str | None, HeaderParameter(name=mm.TIMESTAMP_HEADER, required=False)]
SignatureHeader = Annotated[str | None, HeaderParameter(name=mm.SIGNATURE_HEADER, required=False)]


class MobileMessageWebhookController(Controller):
    path = "/webhooks/mobilemessage"
    tags = ["webhooks"]

    @post(
        "/incoming",
        status_code=200,
        summary="Receive a MobileMessage inbound SMS (reply or opt-out)",
        description=(
            f"Signed with `{mm.TIMESTAMP_HEADER}` and `{mm.SIGNATURE_HEADER}`. Answers once the event is "
            "durably stored; duplicates are answered `duplicate` and start nothing new."
        ),
    )
    async def incoming(
        self,
        request: Request,
        state: State,
        timestamp: TimestampHeader = None,
        signature: SignatureHeader = None,
    ) -> WebhookAck:
        raw = await request.body()
        event = _verify_and_parse(request, raw, timestamp, signature, state, mm.parse_inbound)
        return await accept(state, SOURCE, event.dedupe_key, event.event_type, raw)

    @post(
        "/status",
        status_code=200,
        summary="Receive a MobileMessage delivery receipt (one per message part)",
        description=(
            f"Signed with `{mm.TIMESTAMP_HEADER}` and `{mm.SIGNATURE_HEADER}`. Answers once the receipt is "
            "durably stored; duplicates are answered `duplicate` and start nothing new."
        ),
    )
    async def status(
        self,
        request: Request,
        state: State,
        timestamp: TimestampHeader = None,
        signature: SignatureHeader = None,
    ) -> WebhookAck:
        raw = await request.body()
        event = _verify_and_parse(request, raw, timestamp, signature, state, mm.parse_receipt)
        return await accept(state, STATUS_SOURCE, event.dedupe_key, event.event_type, raw)


def _verify_and_parse(
    request: Request,
    raw: bytes,
    timestamp: str | None,
    signature: str | None,
    state: State,
    parse: Callable[[bytes], _Event],
) -> _Event:
    settings = state.settings
    try:
        secrets = settings.accepted("mobilemessage_webhook_secret")  # current, then previous in its grace
        if not secrets:
            raise mm.MobileMessageSignatureError("MOBILEMESSAGE_WEBHOOK_SECRET is not set")
        for index, secret in enumerate(secrets):
            try:
                mm.verify_signature(
                    raw,
                    timestamp,
                    signature,
                    secret.encode(),
                    tolerance=settings.mobilemessage_webhook_tolerance_seconds,
                )
                break
            except mm.MobileMessageSignatureError:
                if index == len(secrets) - 1:
                    raise
        return parse(raw)
    except mm.MobileMessageSignatureError as exc:
        state.rejections.refused(request, "mobilemessage webhook", str(exc))
        raise NotAuthorizedException(detail=UNAUTHORIZED) from exc
    except mm.MobileMessagePayloadError as exc:
        state.rejections.refused(request, "mobilemessage webhook", f"malformed: {exc}")
        raise ClientException(detail=f"malformed body: {exc}") from exc
