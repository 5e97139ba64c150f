"""The front desk's view of the days ahead: bookings by local day, with whether the patient confirmed."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlmodel import Session, select

from models import Booking, BookingStatus, Contact


@dataclass(frozen=True)
class DayBooking:
    start_local: datetime
    patient: str
    service: str | None
    status: str
    confirmed: bool
    needs_staff: str | None


def local_days(session: Session, first: date, days: int, timezone: str) -> dict[date, list[DayBooking]]:
    """Active bookings starting on `first` and the `days - 1` days after it (clinic time), by day."""
    zone = ZoneInfo(timezone)
    start = datetime.combine(first, time.min, zone).astimezone(UTC)
    end = datetime.combine(first + timedelta(days=days), time.min, zone).astimezone(UTC)
    active = [status.value for status in BookingStatus if status.is_active]
    rows = session.exec(
        select(Booking, Contact)
        .outerjoin(Contact, Booking.contact_id == Contact.id)  # type: ignore[arg-type]
        .where(Booking.start_at >= start, Booking.start_at < end, Booking.status.in_(active))  # type: ignore[attr-defined]
        .order_by(Booking.start_at)  # type: ignore[arg-type]
    ).all()
    by_day: dict[date, list[DayBooking]] = {first + timedelta(days=n): [] for n in range(days)}
    for booking, contact in rows:
        local = booking.start_at.astimezone(zone)
        by_day.setdefault(local.date(), []).append(
            DayBooking(
                start_local=local,
                patient=contact.display_name if contact else "patient",
                service=booking.service_name,
                status=booking.status,
                confirmed=booking.patient_confirmed_at is not None,
                needs_staff=booking.staff_attention,
            )
        )
    return by_day
