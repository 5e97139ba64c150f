"""Who may open which console route: ONE table, one guard on every console route, denied by default.

The table is keyed by (method, route path template) exactly as Litestar routes it; a route missing from it
answers 403 to everyone (and the route x role test fails), so a new page cannot be reachable by accident.

Admin may open every page. A small clinic's admin is its manager, and an admin can change their own
role anyway (audited), so keeping them out of the task queue would only be theatre; what protects patients
is that every view of their details is an audit row, whoever looks.
"""

from __future__ import annotations

import re
from typing import Final

from models import StaffRole

PUBLIC: Final = frozenset({"public"})  # no sign-in (the sign-in pages, static files)
ANY_STAFF: Final = frozenset(StaffRole)
RECEPTION: Final = frozenset({StaffRole.RECEPTION, StaffRole.ADMIN})
MARKETING: Final = frozenset({StaffRole.MARKETER, StaffRole.ADMIN})
OPS: Final = frozenset({StaffRole.OPS, StaffRole.ADMIN})
ADMIN: Final = frozenset({StaffRole.ADMIN})

ROUTES: Final[dict[tuple[str, str], frozenset[str]]] = {
    ("GET", "/console/login"): PUBLIC,
    ("GET", "/console/auth/start"): PUBLIC,
    ("GET", "/console/auth/callback"): PUBLIC,
    ("GET", "/console/static/{file_path:path}"): PUBLIC,
    ("HEAD", "/console/static/{file_path:path}"): PUBLIC,
    ("GET", "/console"): ANY_STAFF,
    ("POST", "/console/logout"): ANY_STAFF,
    ("GET", "/console/bookings"): RECEPTION,
    ("GET", "/console/tasks"): RECEPTION,
    ("GET", "/console/tasks/{task_id:int}"): RECEPTION,
    ("POST", "/console/tasks/{task_id:int}/reveal-phone"): RECEPTION,
    ("POST", "/console/tasks/{task_id:int}/done"): RECEPTION,
    ("GET", "/console/audit"): ADMIN,
    ("GET", "/console/campaigns"): MARKETING,
    ("GET", "/console/campaigns/new"): MARKETING,
    ("POST", "/console/campaigns/preview"): MARKETING,
    ("POST", "/console/campaigns/launch"): MARKETING,
    ("GET", "/console/campaigns/{slug:str}"): MARKETING,
    ("GET", "/console/ops/events"): OPS,
    ("POST", "/console/ops/events/replay"): OPS,
    ("GET", "/console/ops/runs"): OPS,
    ("GET", "/console/ops/consent"): OPS,
    ("POST", "/console/ops/consent"): OPS,
    ("POST", "/console/ops/consent/suppress"): OPS,
    ("POST", "/console/ops/consent/lift"): OPS,
    ("POST", "/console/ops/consent/marketing"): OPS,
    ("GET", "/console/ops/kpis"): OPS,
    ("GET", "/console/audit.csv"): ADMIN,
    ("GET", "/console/admin"): ADMIN,
    ("GET", "/console/admin/staff"): ADMIN,
    ("POST", "/console/admin/staff/add"): ADMIN,
    ("POST", "/console/admin/staff/role"): ADMIN,
    ("POST", "/console/admin/staff/remove"): ADMIN,
    ("GET", "/console/admin/google"): ADMIN,
    ("POST", "/console/admin/google/connect"): ADMIN,
    ("POST", "/console/admin/google/disconnect"): ADMIN,
    ("GET", "/console/admin/keys"): ADMIN,
}

# The navigation: each page appears for the roles that may open it (campaigns, ops pages slot in here).
NAV: Final[tuple[tuple[str, str], ...]] = (
    ("Tasks", "/console/tasks"),
    ("Bookings", "/console/bookings"),
    ("Campaigns", "/console/campaigns"),
    ("Events", "/console/ops/events"),
    ("Runs", "/console/ops/runs"),
    ("Consent", "/console/ops/consent"),
    ("KPIs", "/console/ops/kpis"),
    ("Audit", "/console/audit"),
    ("Admin", "/console/admin"),  # staff and roles, Google, keys (console/admin.py)
)


def _template(path: str) -> str:
    """A path template without parameter types (routes say `{task_id:int}`, the scope `{task_id}`)."""
    return re.sub(r"\{(\w+):\w+\}", r"{\1}", path.rstrip("/") or "/")


_LOOKUP: Final = {(method, _template(path)): roles for (method, path), roles in ROUTES.items()}


def allowed(method: str, path_template: str) -> frozenset[str] | None:
    """The roles that may use this route; None when the table does not know it (denied)."""
    return _LOOKUP.get((method.upper(), _template(path_template)))


def nav_for(role: str) -> list[tuple[str, str]]:
    return [(label, path) for label, path in NAV if role in (allowed("GET", path) or ())]
