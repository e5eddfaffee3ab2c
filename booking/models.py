"""The domain model. The schema's constraints back up every rule the services keep."""
from datetime import datetime, timezone

import sqlalchemy as sa
from flask_login import UserMixin
from sqlalchemy.dialects import mysql
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .extensions import db

# Microsecond precision on MariaDB (its DATETIME drops fractions by default);
# hold expiry is compared to the second and ordered below it.
UTCDateTime = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")

# Every id is an INT column: a larger number names nothing (and SQLite cannot even
# bind one beyond 64 bits), so readers treat it as unknown instead of querying.
ID_MAX = 2**31 - 1

SEAT_STATUSES = ("available", "held", "sold")
HOLD_STATUSES = ("held", "paying", "paid", "released", "expired")
HOLD_OPEN_STATUSES = ("held", "paying")
ORDER_STATUSES = ("paid", "refunded")
# A waiting room's state (NULL: the event has none). See booking/waiting_room.py.
WAITING_ROOM_STATES = ("open", "paused", "draining")
PAYMENT_STATUSES = ("pending", "captured", "declined", "failed", "refunded")
# A member's role in an organizer: admins run everything, staff check in and read sales.
MEMBER_ROLES = ("admin", "staff")


def utcnow():
    """The current time as a naive UTC datetime (how every time is stored)."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


def iso_utc(moment):
    """A naive UTC datetime as ISO-8601 with a Z (milliseconds when it has any)."""
    if moment is None:
        return None
    return moment.isoformat(timespec="milliseconds" if moment.microsecond else "seconds") + "Z"


def _in(column, values):
    return sa.CheckConstraint(
        f"{column} IN ({', '.join(repr(v) for v in values)})", name=f"{column}_valid")


class User(UserMixin, db.Model):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(sa.String(254), unique=True)
    name: Mapped[str] = mapped_column(sa.String(100), default="")
    password_hash: Mapped[str] = mapped_column(sa.String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Organizer(db.Model):
    """Who runs events: owns venues and events; users are its members with a role."""
    __tablename__ = "organizers"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Membership(db.Model):
    """A user's role in one organizer. Buyers are members of nothing."""
    __tablename__ = "memberships"
    __table_args__ = (_in("role", MEMBER_ROLES),)
    organizer_id: Mapped[int] = mapped_column(sa.ForeignKey("organizers.id"), primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"), primary_key=True, index=True)
    role: Mapped[str] = mapped_column(sa.String(10))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Venue(db.Model):
    __tablename__ = "venues"
    # Names are unique per organizer (two organizers may both play a "Main Hall");
    # venues without an organizer (made by ops) are kept unique by catalog.create_event.
    __table_args__ = (sa.UniqueConstraint("organizer_id", "name"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    timezone: Mapped[str] = mapped_column(sa.String(64), default="UTC")
    organizer_id: Mapped[int | None] = mapped_column(sa.ForeignKey("organizers.id"))


class Event(db.Model):
    __tablename__ = "events"
    __table_args__ = (
        sa.CheckConstraint("length(currency) = 3", name="currency_code"),
        _in("waiting_room", WAITING_ROOM_STATES),
        sa.CheckConstraint("admission_rate_per_min IS NULL OR admission_rate_per_min >= 1",
                           name="admission_rate_positive"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    venue_id: Mapped[int] = mapped_column(sa.ForeignKey("venues.id"))
    name: Mapped[str] = mapped_column(sa.String(200))
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime)
    currency: Mapped[str] = mapped_column(sa.String(3), default="EUR")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # When seats go on sale (NULL: on sale from creation). Before it, holds are refused.
    on_sale_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The waiting room's state, or NULL for an event without one (not gated).
    waiting_room: Mapped[str | None] = mapped_column(sa.String(10))
    # Buyers admitted per minute; NULL: derived from how the workers keep up.
    admission_rate_per_min: Mapped[int | None] = mapped_column(sa.Integer)
    # Who runs it (NULL: a house event made by ops; no organizer route sees it).
    organizer_id: Mapped[int | None] = mapped_column(sa.ForeignKey("organizers.id"), index=True)

    venue: Mapped[Venue] = relationship(lazy="joined")


class Seat(db.Model):
    __tablename__ = "seats"
    __table_args__ = (
        sa.UniqueConstraint("event_id", "section", "row", "number"),
        sa.UniqueConstraint("event_id", "label"),
        _in("status", SEAT_STATUSES),
        sa.CheckConstraint("price_cents >= 0", name="price_not_negative"),
        sa.CheckConstraint("version >= 0", name="version_not_negative"),
        # A seat's references follow its status: a held seat names its hold,
        # a sold seat its order, an available seat neither.
        sa.CheckConstraint(
            "(status = 'available' AND hold_id IS NULL AND order_id IS NULL"
            " AND hold_expires_at IS NULL)"
            " OR (status = 'held' AND hold_id IS NOT NULL AND order_id IS NULL)"
            " OR (status = 'sold' AND order_id IS NOT NULL AND hold_id IS NULL"
            " AND hold_expires_at IS NULL)",
            name="refs_match_status"),
        sa.Index("ix_seats_status_expires", "status", "hold_expires_at"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    event_id: Mapped[int] = mapped_column(sa.ForeignKey("events.id"), index=True)
    section: Mapped[str] = mapped_column(sa.String(40))
    row: Mapped[str] = mapped_column(sa.String(10))
    number: Mapped[int] = mapped_column(sa.Integer)
    label: Mapped[str] = mapped_column(sa.String(64))
    price_cents: Mapped[int] = mapped_column(sa.Integer)
    status: Mapped[str] = mapped_column(sa.String(10), default="available")
    version: Mapped[int] = mapped_column(sa.Integer, default=0)
    hold_id: Mapped[int | None] = mapped_column(sa.ForeignKey("holds.id"), index=True)
    # Copied from the hold so that a claim decides on the seat row alone.
    # NULL while the hold is being paid: such a seat never counts as expired.
    hold_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    order_id: Mapped[int | None] = mapped_column(sa.ForeignKey("orders.id"), index=True)

    hold: Mapped["Hold | None"] = relationship(foreign_keys=[hold_id], lazy="raise")


class Hold(db.Model):
    __tablename__ = "holds"
    __table_args__ = (
        _in("status", HOLD_STATUSES),
        sa.CheckConstraint("amount_cents >= 0", name="amount_not_negative"),
        sa.Index("ix_holds_user_status", "user_id", "status"),
        sa.Index("ix_holds_status_expires", "status", "expires_at"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"))
    event_id: Mapped[int] = mapped_column(sa.ForeignKey("events.id"))
    status: Mapped[str] = mapped_column(sa.String(10), default="held")
    amount_cents: Mapped[int] = mapped_column(sa.Integer)
    currency: Mapped[str] = mapped_column(sa.String(3))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    seats: Mapped[list["HoldSeat"]] = relationship(
        lazy="selectin", order_by="HoldSeat.seat_id", cascade="all, delete-orphan")

    @property
    def seat_ids(self):
        return [s.seat_id for s in self.seats]


class HoldSeat(db.Model):
    """Which seats a hold covered, kept after the seats move on."""
    __tablename__ = "hold_seats"
    hold_id: Mapped[int] = mapped_column(sa.ForeignKey("holds.id"), primary_key=True)
    seat_id: Mapped[int] = mapped_column(sa.ForeignKey("seats.id"), primary_key=True)
    price_cents: Mapped[int] = mapped_column(sa.Integer)


class Order(db.Model):
    __tablename__ = "orders"
    __table_args__ = (
        _in("status", ORDER_STATUSES),
        sa.CheckConstraint("amount_cents >= 0", name="amount_not_negative"),
        sa.Index("ix_orders_user_created", "user_id", "created_at"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"))
    event_id: Mapped[int] = mapped_column(sa.ForeignKey("events.id"))
    # One order per hold: two payments racing for a hold cannot both become orders.
    hold_id: Mapped[int] = mapped_column(sa.ForeignKey("holds.id"), unique=True)
    status: Mapped[str] = mapped_column(sa.String(10), default="paid")
    amount_cents: Mapped[int] = mapped_column(sa.Integer)
    currency: Mapped[str] = mapped_column(sa.String(3))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    items: Mapped[list["OrderSeat"]] = relationship(
        lazy="selectin", order_by="OrderSeat.seat_id", cascade="all, delete-orphan")
    payment: Mapped["Payment | None"] = relationship(
        lazy="selectin", primaryjoin="Payment.order_id == Order.id", uselist=False,
        viewonly=True)


class OrderSeat(db.Model):
    __tablename__ = "order_seats"
    order_id: Mapped[int] = mapped_column(sa.ForeignKey("orders.id"), primary_key=True)
    seat_id: Mapped[int] = mapped_column(sa.ForeignKey("seats.id"), primary_key=True)
    label: Mapped[str] = mapped_column(sa.String(64))
    price_cents: Mapped[int] = mapped_column(sa.Integer)


class Payment(db.Model):
    """One charge attempt, keyed by the buyer's idempotency key. No card data but brand and last 4."""
    __tablename__ = "payments"
    __table_args__ = (
        sa.UniqueConstraint("user_id", "idempotency_key"),
        _in("status", PAYMENT_STATUSES),
        sa.CheckConstraint("amount_cents >= 0", name="amount_not_negative"),
        sa.Index("ix_payments_status_updated", "status", "updated_at"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"))
    hold_id: Mapped[int] = mapped_column(sa.ForeignKey("holds.id"), index=True)
    order_id: Mapped[int | None] = mapped_column(sa.ForeignKey("orders.id"), unique=True)
    idempotency_key: Mapped[str] = mapped_column(sa.String(64))
    status: Mapped[str] = mapped_column(sa.String(10), default="pending")
    amount_cents: Mapped[int] = mapped_column(sa.Integer)
    currency: Mapped[str] = mapped_column(sa.String(3))
    brand: Mapped[str] = mapped_column(sa.String(20), default="")
    last4: Mapped[str] = mapped_column(sa.String(4), default="")
    processor: Mapped[str] = mapped_column(sa.String(20))
    # The processor's idempotency key: the buyer's key, scoped to the buyer.
    processor_key: Mapped[str] = mapped_column(sa.String(100), unique=True)
    # The socket request that started it, so that a late outcome reaches the buyer.
    request_id: Mapped[str] = mapped_column(sa.String(64))
    reference: Mapped[str | None] = mapped_column(sa.String(64))
    decline_reason: Mapped[str | None] = mapped_column(sa.String(40))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class RequestRecord(db.Model):
    """The outcome of one client request, so that a repeat is answered, never performed again."""
    __tablename__ = "request_records"
    __table_args__ = (sa.UniqueConstraint("user_id", "request_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"))
    request_id: Mapped[str] = mapped_column(sa.String(64))
    kind: Mapped[str] = mapped_column(sa.String(10))
    event: Mapped[str] = mapped_column(sa.String(20))
    result: Mapped[str] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class SimCharge(db.Model):
    """The simulated processor's own ledger (what an outside processor would keep)."""
    __tablename__ = "sim_charges"
    __table_args__ = (
        sa.CheckConstraint("status IN ('captured', 'declined', 'refunded')", name="status_valid"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(sa.String(100), unique=True)
    amount_cents: Mapped[int] = mapped_column(sa.Integer)
    currency: Mapped[str] = mapped_column(sa.String(3))
    status: Mapped[str] = mapped_column(sa.String(10))
    decline_reason: Mapped[str | None] = mapped_column(sa.String(40))
    brand: Mapped[str] = mapped_column(sa.String(20))
    last4: Mapped[str] = mapped_column(sa.String(4))
    reference: Mapped[str] = mapped_column(sa.String(40), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    refunded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class StripeIntent(db.Model):
    """Which Stripe PaymentIntent a processor key made, written before it is confirmed.

    Stripe's own record of the key (its Idempotency-Key) lasts 24 hours and
    cannot be searched; this row lets reconciliation, refunds and the audit find
    the intent of any payment, and a retried charge continue the same intent.
    """
    __tablename__ = "stripe_intents"
    processor_key: Mapped[str] = mapped_column(sa.String(100), primary_key=True)
    intent_id: Mapped[str] = mapped_column(sa.String(255), unique=True)
    amount_cents: Mapped[int] = mapped_column(sa.Integer)
    currency: Mapped[str] = mapped_column(sa.String(3))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class StripeEvent(db.Model):
    """A Stripe webhook event already applied (Stripe delivers at least once)."""
    __tablename__ = "stripe_events"
    id: Mapped[str] = mapped_column(sa.String(255), primary_key=True)
    type: Mapped[str] = mapped_column(sa.String(100))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
