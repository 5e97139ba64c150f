"""`POST /webhooks/wix/bookings`: the real Wix Bookings v2 JWT webhook and the integration plan's HMAC JSON.

Order matters: verify the signature on the raw bytes (and, when WIX_SITE_ID / WIX_INSTANCE_ID are set, that
the event is for this site: 403 otherwise), parse into a typed event (so a malformed body is refused
with a reason while the sender can still fix it), commit to the inbox, then answer. Wix gives us 1250 ms, and
an answer always means "stored".
"""

from __future__ import annotations

import logging
from typing import Annotated

from litestar import Controller, Request, post
from litestar.datastructures import State
from litestar.exceptions import ClientException, NotAuthorizedException, PermissionDeniedException
from litestar.params import HeaderParameter

from providers import wix
from webhook_gateway.errors import UNAUTHORIZED
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
        event = _verify_and_parse(request, raw, signature, state)
        if event is None:
            return WebhookAck(status="ignored", reason="not a booking event")
        booking = event.booking
        subject = booking.booking_id if len(booking.booking_id) <= 128 else None  # longer: fails when applied
        return await accept(state, SOURCE, event.dedupe_key, event.event_type, raw, subject, booking.revision)


def _verify_and_parse(
    request: Request, raw: bytes, signature: str | None, state: State
) -> wix.BookingEvent | None:
    settings = state.settings
    try:
        if signature is not None:
            secrets = settings.accepted("wix_webhook_secret")  # the current, and a previous one in its grace
            if not secrets:
                raise wix.WixSignatureError("HMAC-signed webhook but WIX_WEBHOOK_SECRET is unset")
            for index, secret in enumerate(secrets):
                try:
                    wix.verify_hmac(raw, signature, secret.encode())
                    break
                except wix.WixSignatureError:
                    if index == len(secrets) - 1:
                        raise
            return wix.parse_simple(raw)
        if not settings.wix_public_key:
            raise wix.WixSignatureError(f"missing {HMAC_HEADER} and WIX_PUBLIC_KEY is unset")
        claims = wix.verify_jwt(raw, settings.wix_public_key)
        wix.check_instance(claims, instance_id=settings.wix_instance_id, site_id=settings.wix_site_id)
        return wix.parse_envelope(claims)
    except wix.WixSignatureError as exc:
        state.rejections.refused(request, "wix webhook", str(exc))
        raise NotAuthorizedException(detail=UNAUTHORIZED) from exc
    except wix.WixInstanceError as exc:
        state.rejections.refused(request, "wix webhook", str(exc))
        raise PermissionDeniedException(detail="webhook is not for this site") from exc
    except wix.WixPayloadError as exc:
        state.rejections.refused(request, "wix webhook", f"malformed: {exc}")
        raise ClientException(detail=f"malformed body: {exc}") from exc
