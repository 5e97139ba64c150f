"""How every console page is rendered: the signed-in person and their navigation in the context, and headers
that keep a page out of caches and frames."""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.response import Template

from console.roles import nav_for

NO_STORE = {"Cache-Control": "no-store", "Referrer-Policy": "same-origin", "X-Frame-Options": "DENY"}


def page(request: Request, name: str, status_code: int = 200, **context: Any) -> Template:
    actor = request.state.get("actor")
    context.update(actor=actor, nav=nav_for(actor.role) if actor else [], path=request.url.path)
    return Template(template_name=name, context=context, status_code=status_code, headers=NO_STORE)
