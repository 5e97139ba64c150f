"""`POST /webhooks/wix/bookings`: the real Wix Bookings v2 JWT webhook and the integration plan's HMAC JSON.

Order matters: verify the signature on the raw bytes, parse into a typed event (so a malformed body is refused
with a reason while the sender can still fix it), commit to the inbox, then answer. Wix gives us 1250 ms, and
an answer always means "stored".
"""

from __future__ import annotations

import logging
from typing import Annotated

from litestar import Controller, Request, post
from litestar.datastructures import State
from litestar.exceptions import ClientException, NotAuthorizedException
from litestar.params import HeaderParameter

from providers import wix
from webhook_gateway.inbox import accept
from webhook_gateway.schemas import WebhookAck

logger = logging.getLogger(__name__)

SOURCE = "wix"
HMAC_HEADER = "X-Wix-Webhook-Signature"


class WixWebhookController(Controller):
    path = "/webhooks/wix"
    tags = ["webhooks"]

    @post(
        "/bookings",
        status_code=200,
        summary="Receive a Wix Bookings webhook",
        description=(
            "Accepts the Wix Bookings v2 webhook (the body is an RS256 JWT) or the simple JSON format signed "
            f"with `{HMAC_HEADER}`. Answers once the event is durably stored; duplicates are answered "
            "`duplicate` and start nothing new."
        ),
    )
    async def bookings(
        self,
        request: Request,
        state: State,
        signature: Annotated[str | None, HeaderParameter(name=HMAC_HEADER, required=False)] = None,
    ) -> WebhookAck:
        raw = await request.body()
        event = _verify_and_parse(raw, signature, state)
        if event is None:
            return WebhookAck(status="ignored", reason="not a booking event")
        return await accept(state, SOURCE, event.dedupe_key, event.event_type, raw)


def _verify_and_parse(raw: bytes, signature: str | None, state: State) -> wix.BookingEvent | None:
    settings = state.settings
    try:
        if signature is not None:
            if settings.wix_webhook_secret is None:
                raise wix.WixSignatureError("HMAC-signed webhooks are not enabled (WIX_WEBHOOK_SECRET unset)")
            wix.verify_hmac(raw, signature, settings.wix_webhook_secret.get_secret_value().encode())
            return wix.parse_simple(raw)
        if not settings.wix_public_key:
            raise wix.WixSignatureError(f"missing {HMAC_HEADER} and WIX_PUBLIC_KEY is unset")
        claims = wix.verify_jwt(raw, settings.wix_public_key)
        return wix.parse_envelope(claims)
    except wix.WixSignatureError as exc:
        logger.warning("rejected wix webhook: %s", exc)
        raise NotAuthorizedException(detail=f"signature verification failed: {exc}") from exc
    except wix.WixPayloadError as exc:
        logger.warning("malformed wix webhook: %s", exc)
        raise ClientException(detail=f"malformed body: {exc}") from exc
