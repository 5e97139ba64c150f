"""The admin's audit viewer through Litestar's TestClient (signed in through the fake Google OIDC): filters
narrow to exactly the matching rows, keyset pages walk every row once, the CSV export holds the same rows and
columns and is itself an audit row, and a marketer is refused both."""

from __future__ import annotations

import csv
import io
import re
import uuid
from collections.abc import Iterator

import pytest
from litestar import Litestar
from litestar.testing import TestClient

from access import audit_view
from models import AccessAudit, Settings, StaffRole, session_scope
from models.access_audit import Actor, record, verify
from models.types import utcnow
from tests.console_env import BASE, STAFF, audit_rows, sign_in
from tests.fakes.google_oidc import FakeGoogleOIDC
from webhook_gateway.app import create_app

pytestmark = pytest.mark.db


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient[Litestar]]:
    app = create_app(settings, prefect_api_url="http://127.0.0.1:9/api")
    with TestClient(app, base_url=BASE) as test_client:
        yield test_client


@pytest.fixture
def seeded(db: str) -> dict[str, list[int]]:
    """250 rows by two people of one run (a fresh tag: the log is append-only, earlier tests' rows stay)."""
    tag = uuid.uuid4().hex[:8]
    ids: dict[str, list[int]] = {"tag": [], "a": [], "b": [], "a_denied": [], "contact_7": []}
    with session_scope() as session:
        for n in range(250):
            who = "a" if n % 3 else "b"
            outcome = "denied" if n % 10 == 0 else "allowed"
            subject = f"contact:{tag}7" if n % 4 == 0 else f"contact:{tag}{n}"
            row = record(
                session,
                Actor(f"{who}-{tag}@clinic.example", "reception"),
                action=f"test.{tag}.{'read' if n % 2 else 'write'}",
                subject=subject,
                outcome=outcome,
                reason='=HYPERLINK("x")' if n == 5 else None,
            )
            assert row.id is not None
            ids["tag"].append(row.id)
            ids[who].append(row.id)
            if who == "a" and outcome == "denied":
                ids["a_denied"].append(row.id)
            if subject.endswith(f"{tag}7"):
                ids["contact_7"].append(row.id)
    return {**ids, "_tag": [int(tag, 16)]}


def _tag(seeded: dict[str, list[int]]) -> str:
    return f"{seeded['_tag'][0]:08x}"


def _ids(html: str) -> list[int]:
    return [int(i) for i in re.findall(r"<tr><td>(\d+)</td>", html)]


def test_filters_narrow_to_exactly_the_matching_rows(seeded: dict[str, list[int]]) -> None:
    tag = _tag(seeded)
    with session_scope() as session:

        def everything(filters: audit_view.AuditFilter) -> list[int]:
            found, before = [], None
            while True:
                page = audit_view.page(session, filters, before)
                assert len(page.rows) <= audit_view.PAGE
                found += [r.id for r in page.rows]
                if page.next_before is None:
                    return found
                before = page.next_before

        a = f"a-{tag}@clinic.example"
        assert everything(audit_view.AuditFilter(actor=a)) == sorted(seeded["a"], reverse=True)
        assert everything(audit_view.AuditFilter(actor=a, outcome="denied")) == sorted(
            seeded["a_denied"], reverse=True
        )
        assert everything(audit_view.AuditFilter(subject=f"contact:{tag}7")) == sorted(
            seeded["contact_7"], reverse=True
        )
        reads = everything(audit_view.AuditFilter(action=f"test.{tag}.read"))
        assert reads == [i for i in sorted(seeded["tag"], reverse=True) if (i - seeded["tag"][0]) % 2]
        today = utcnow().date()
        assert everything(audit_view.AuditFilter(actor=a, date_from=today, date_to=today)) == sorted(
            seeded["a"], reverse=True
        )
        tomorrow = audit_view.AuditFilter(actor=a, date_from=today.replace(year=today.year + 1))
        assert everything(tomorrow) == []
        assert everything(audit_view.AuditFilter(actor=a, date_to=today.replace(year=today.year - 1))) == []


def test_pages_walk_every_row_once_newest_first(
    client: TestClient[Litestar], fake: FakeGoogleOIDC, seeded: dict[str, list[int]]
) -> None:
    tag = _tag(seeded)
    assert sign_in(client, fake, STAFF[StaffRole.ADMIN]).status_code == 303
    seen: list[int] = []
    url = f"/console/audit?actor=a-{tag}%40clinic.example&action=&subject=&outcome=&from=&to="
    pages = 0
    while url:
        answer = client.get(url)
        assert answer.status_code == 200, answer.text
        seen += _ids(answer.text)
        pages += 1
        older = re.search(r'href="(/console/audit\?[^"]*before=\d+[^"]*)">Older', answer.text)
        url = older.group(1).replace("&amp;", "&") if older else ""
    assert seen == sorted(seeded["a"], reverse=True) and len(set(seen)) == len(seen) == 166
    assert pages == 2
    unfiltered = _ids(client.get("/console/audit").text)
    assert len(unfiltered) == 100 and unfiltered == sorted(unfiltered, reverse=True)
    assert client.get("/console/audit?from=yesterday").status_code == 400


def test_csv_export_holds_the_rows_and_is_audited(
    client: TestClient[Litestar], fake: FakeGoogleOIDC, seeded: dict[str, list[int]]
) -> None:
    tag = _tag(seeded)
    assert sign_in(client, fake, STAFF[StaffRole.ADMIN]).status_code == 303
    answer = client.get(f"/console/audit.csv?actor=b-{tag}%40clinic.example&from=")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/csv")
    assert answer.headers["content-disposition"].startswith("attachment;")
    table = list(csv.reader(io.StringIO(answer.text)))
    assert tuple(table[0]) == audit_view.CSV_COLUMNS
    with session_scope() as session:
        expected = [session.get(AccessAudit, i) for i in sorted(seeded["b"], reverse=True)]
    assert [int(r[0]) for r in table[1:]] == [r.id for r in expected if r]
    first = expected[0]
    assert first is not None
    assert table[1][1:9] == [
        first.at.isoformat(),
        first.actor,
        first.role,
        "",
        first.action,
        first.subject,
        first.outcome,
        "",
    ]
    everything = client.get(f"/console/audit.csv?subject=contact:{tag}5")
    assert [r[8] for r in csv.reader(io.StringIO(everything.text))][1:] == ['\'=HYPERLINK("x")']
    exports = audit_rows("audit.exported")[-2:]
    assert [(r.actor, r.role, r.detail) for r in exports] == [
        (STAFF[StaffRole.ADMIN], "admin", {"filters": {"actor": f"b-{tag}@clinic.example"}}),
        (STAFF[StaffRole.ADMIN], "admin", {"filters": {"subject": f"contact:{tag}5"}}),
    ]
    with session_scope() as session:
        assert verify(session).intact


def test_marketer_may_neither_view_nor_export(client: TestClient[Litestar], fake: FakeGoogleOIDC) -> None:
    assert sign_in(client, fake, STAFF[StaffRole.MARKETER]).status_code == 303
    before = len(audit_rows("audit.exported"))
    assert client.get("/console/audit").status_code == 403
    assert client.get("/console/audit.csv").status_code == 403
    assert len(audit_rows("audit.exported")) == before
    denied = audit_rows("console.denied")[-1]
    assert denied.role == "marketer" and denied.detail["path"] == "/console/audit.csv"
