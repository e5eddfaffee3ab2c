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
ORDER_STATUSES = ("paid", "partially_refunded", "refunded")
TICKET_STATUSES = ("valid", "checked_in", "void")
REFUND_STATUSES = ("pending", "succeeded", "failed")
MAIL_STATUSES = ("pending", "sent", "failed")
# A waiting room's state (NULL: the event has none). See booking/waiting_room.py.
WAITING_ROOM_STATES = ("open", "paused", "draining")
PAYMENT_STATUSES = ("pending", "captured", "declined", "failed", "refunded")
# Why a seat is kept from sale (NULL: it is not): a production hold may be released
# later, a kill never sells (a camera position, a sound desk). See booking/event_admin.py.
BLOCK_REASONS = ("hold", "kill")
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
    # When the owner proved the address (the link of the verification e-mail).
    email_verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Every session cookie and bearer token carries the version it was issued
    # under; signing out bumps it, which ends them all at once (booking.sessions).
    session_version: Mapped[int] = mapped_column(default=0, server_default="0")

    def get_id(self):
        """What Flask-Login keeps in the session cookie: the id and the session version."""
        return f"{self.id}:{self.session_version}"


class EndedLogin(db.Model):
    """A sign-in its user signed out of: its session cookie and bearer token stop working.

    Each sign-in gets a random login id, carried by its cookie and its token;
    only ended ones are stored. ("Sign out everywhere" bumps User.session_version.)
    """
    __tablename__ = "ended_logins"
    id: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"), index=True)
    ended_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


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
    # The venue layout (docs/LAYOUTS.md) as JSON text; NULL for venues made by
    # `booking create-event` (rectangular sections, no plan).
    layout: Mapped[str | None] = mapped_column(
        sa.Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb"))


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
    description: Mapped[str | None] = mapped_column(sa.Text)

    venue: Mapped[Venue] = relationship(lazy="joined")


class PriceTier(db.Model):
    """A named price of an event; its seats carry the tier's name and, while unsold, its price."""
    __tablename__ = "price_tiers"
    __table_args__ = (sa.CheckConstraint("price_cents >= 0", name="price_not_negative"),)
    event_id: Mapped[int] = mapped_column(sa.ForeignKey("events.id"), primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    price_cents: Mapped[int] = mapped_column(sa.Integer)
    position: Mapped[int] = mapped_column(sa.Integer, default=0)


class Invitation(db.Model):
    """A membership waiting for its account: claimed when someone signs up with the e-mail."""
    __tablename__ = "invitations"
    __table_args__ = (sa.UniqueConstraint("organizer_id", "email"), _in("role", MEMBER_ROLES))
    id: Mapped[int] = mapped_column(primary_key=True)
    organizer_id: Mapped[int] = mapped_column(sa.ForeignKey("organizers.id"))
    email: Mapped[str] = mapped_column(sa.String(254), index=True)
    role: Mapped[str] = mapped_column(sa.String(10))
    invited_by: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


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
        _in("blocked", BLOCK_REASONS),
        # Only an available seat is kept from sale: a held or sold one cannot be.
        sa.CheckConstraint("blocked IS NULL OR status = 'available'", name="blocked_available"),
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
    # Where a seat map draws it (plan units of the venue layout; NULL: no plan).
    x: Mapped[float | None] = mapped_column(sa.Float)
    y: Mapped[float | None] = mapped_column(sa.Float)
    tier: Mapped[str | None] = mapped_column(sa.String(40))
    # Kept from sale ('hold' or 'kill'); a worker never holds such a seat.
    blocked: Mapped[str | None] = mapped_column(sa.String(4))
    wheelchair: Mapped[bool] = mapped_column(sa.Boolean, default=False, server_default=sa.false())
    companion: Mapped[bool] = mapped_column(sa.Boolean, default=False, server_default=sa.false())
    restricted_view: Mapped[bool] = mapped_column(sa.Boolean, default=False,
                                                  server_default=sa.false())

    hold: Mapped["Hold | None"] = relationship(foreign_keys=[hold_id], lazy="raise")


class Hold(db.Model):
    __tablename__ = "holds"
    __table_args__ = (
        _in("status", HOLD_STATUSES),
        sa.CheckConstraint("amount_cents >= 0", name="amount_not_negative"),
        # The buyer's foreign key has an index of its own: InnoDB checks the key (a shared
        # lock on the users row, out of the lock order) on any change to its index's
        # columns, and a hold's status changes often (migration 0011).
        sa.Index("ix_holds_user", "user_id"),
        sa.Index("ix_holds_status_user", "status", "user_id"),
        sa.Index("ix_holds_status_expires", "status", "expires_at"),
        # The dashboard's holds a minute.
        sa.Index("ix_holds_event_created", "event_id", "created_at"),
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
        # The dashboard's orders a minute, the back office's order lists.
        sa.Index("ix_orders_event_created", "event_id", "created_at"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"))
    event_id: Mapped[int] = mapped_column(sa.ForeignKey("events.id"))
    # One order per hold: two payments racing for a hold cannot both become orders.
    hold_id: Mapped[int] = mapped_column(sa.ForeignKey("holds.id"), unique=True)
    status: Mapped[str] = mapped_column(sa.String(20), default="paid")
    amount_cents: Mapped[int] = mapped_column(sa.Integer)
    currency: Mapped[str] = mapped_column(sa.String(3))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    items: Mapped[list["OrderSeat"]] = relationship(
        lazy="selectin", order_by="OrderSeat.seat_id", cascade="all, delete-orphan")
    payment: Mapped["Payment | None"] = relationship(
        lazy="selectin", primaryjoin="Payment.order_id == Order.id", uselist=False,
        viewonly=True)
    tickets: Mapped[list["Ticket"]] = relationship(
        lazy="selectin", order_by="Ticket.seat_id", viewonly=True)


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
    # A failed payment, once reconciliation confirmed by key that the processor kept nothing.
    checked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
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
    # Refunded so far (partial refunds add up; the whole amount makes it 'refunded').
    refunded_cents: Mapped[int] = mapped_column(sa.Integer, default=0, server_default="0")


class SimRefund(db.Model):
    """The simulated processor's refunds, one per refund key (a retried refund refunds once)."""
    __tablename__ = "sim_refunds"
    id: Mapped[int] = mapped_column(primary_key=True)
    refund_key: Mapped[str] = mapped_column(sa.String(120), unique=True)
    charge_key: Mapped[str] = mapped_column(sa.String(100), index=True)
    amount_cents: Mapped[int] = mapped_column(sa.Integer)
    reference: Mapped[str] = mapped_column(sa.String(40), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Ticket(db.Model):
    """One seat of a paid order, with the signed code its QR carries (booking/tickets.py)."""
    __tablename__ = "tickets"
    __table_args__ = (
        sa.UniqueConstraint("order_id", "seat_id"),
        _in("status", TICKET_STATUSES),
        sa.CheckConstraint("(status = 'checked_in') = (checked_in_at IS NOT NULL)",
                           name="checked_in_has_time"),
        sa.Index("ix_tickets_event_status", "event_id", "status"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(sa.ForeignKey("orders.id"), index=True)
    event_id: Mapped[int] = mapped_column(sa.ForeignKey("events.id"))
    seat_id: Mapped[int] = mapped_column(sa.ForeignKey("seats.id"), index=True)
    price_cents: Mapped[int] = mapped_column(sa.Integer)
    # NULL only inside the transaction that creates it (the code signs the ticket's id).
    code: Mapped[str | None] = mapped_column(sa.String(200), unique=True)
    status: Mapped[str] = mapped_column(sa.String(12), default="valid")
    checked_in_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    gate: Mapped[str | None] = mapped_column(sa.String(64))
    checked_in_by: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))
    refund_id: Mapped[int | None] = mapped_column(sa.ForeignKey("refunds.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    seat: Mapped[Seat] = relationship(lazy="joined", viewonly=True)


class Refund(db.Model):
    """One refund of some or all of an order's tickets, keyed by the organizer's idempotency key."""
    __tablename__ = "refunds"
    __table_args__ = (
        sa.UniqueConstraint("order_id", "idempotency_key"),
        _in("status", REFUND_STATUSES),
        sa.CheckConstraint("amount_cents >= 0", name="amount_not_negative"),
        sa.Index("ix_refunds_status_updated", "status", "updated_at"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(sa.ForeignKey("orders.id"), index=True)
    # The organizer's admin who asked; empty for a refund made at the processor (its dashboard).
    requested_by: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))
    idempotency_key: Mapped[str] = mapped_column(sa.String(64))
    # The processor's refund key: one refund at the processor per row, however often asked.
    processor_key: Mapped[str] = mapped_column(sa.String(120), unique=True)
    amount_cents: Mapped[int] = mapped_column(sa.Integer)
    currency: Mapped[str] = mapped_column(sa.String(3))
    status: Mapped[str] = mapped_column(sa.String(10), default="pending")
    reference: Mapped[str | None] = mapped_column(sa.String(40))
    failure_reason: Mapped[str | None] = mapped_column(sa.String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class MailOutbox(db.Model):
    """An e-mail to send, written in the transaction that makes it due (booking/mail.py)."""
    __tablename__ = "mail_outbox"
    __table_args__ = (
        _in("status", MAIL_STATUSES),
        sa.Index("ix_mail_outbox_status_next", "status", "next_attempt_at"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    # What makes this mail unique (e.g. order:12:confirmation): one row, one mail.
    dedupe_key: Mapped[str] = mapped_column(sa.String(120), unique=True)
    kind: Mapped[str] = mapped_column(sa.String(30))
    to_addr: Mapped[str] = mapped_column(sa.String(254))
    user_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"), index=True)
    order_id: Mapped[int | None] = mapped_column(sa.ForeignKey("orders.id"), index=True)
    refund_id: Mapped[int | None] = mapped_column(sa.ForeignKey("refunds.id"))
    # JSON of what the mail needs beyond the rows it names (a link's token).
    params: Mapped[str] = mapped_column(sa.Text, default="{}")
    # Fixed per row: a mail sent twice (a worker died after the server took it)
    # carries the same Message-ID, which receivers use to drop the repeat.
    message_id: Mapped[str] = mapped_column(sa.String(200), unique=True)
    status: Mapped[str] = mapped_column(sa.String(10), default="pending")
    attempts: Mapped[int] = mapped_column(sa.Integer, default=0)
    lease_token: Mapped[str | None] = mapped_column(sa.String(32))
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_error: Mapped[str | None] = mapped_column(sa.String(500))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class UserToken(db.Model):
    """A single-use token of an e-mail link (verify the address, reset the password)."""
    __tablename__ = "user_tokens"
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"), index=True)
    purpose: Mapped[str] = mapped_column(sa.String(20))
    # SHA-256 of the token: a database leak does not hand out reset links.
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


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
