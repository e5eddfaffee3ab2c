"""Shared set-up of the back-office tests: two organizers, their people, venues and events.

People sign in with bearer tokens (no cookies), so that one test client can act as
anyone: `office.h("admin")` is the header of organizer A's admin.
"""
import hashlib
import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime

import pytest
import sqlalchemy as sa

from booking import event_admin, organizers, venues
from booking.auth import hash_password, issue_token
from booking.extensions import db
from booking.models import User
from tests.harness import ROOT, wait_until

EXAMPLE_LAYOUT = ROOT / "docs" / "examples" / "theatre-2000.json"
TIERS = [{"name": "Premium", "price_cents": 8500}, {"name": "Standard", "price_cents": 5500},
         {"name": "Restricted", "price_cents": 2500}]


def example_layout():
    return json.loads(EXAMPLE_LAYOUT.read_text())


def small_layout(rows=2, seats=5, tiers=("Front", "Back")):
    """A small valid layout: one section, `rows` straight rows, the first tier in front."""
    return {"format": "boxoffice-venue-layout", "version": 1,
            "plan": {"width": 200, "height": 100},
            "stage": {"x": 50, "y": 0, "width": 100, "height": 10},
            "focal_point": {"x": 100, "y": 10}, "tiers": list(tiers),
            "sections": [{"name": "Hall", "tier": tiers[-1], "position": {"x": 100, "y": 40},
                          "rows": [{"name": chr(65 + r), "seats": seats,
                                    **({"tier": tiers[0]} if r == 0 else {})}
                                   for r in range(rows)]}]}


@dataclass
class Office:
    """Who is who: user ids and tokens by role name; organizers, venues, events by key."""
    app: object
    users: dict = field(default_factory=dict)     # role -> (id, token)
    ids: dict = field(default_factory=dict)

    def h(self, who):
        """Headers of `who` (None: nobody signed in)."""
        return {} if who is None else {"Authorization": f"Bearer {self.users[who][1]}"}

    def uid(self, who):
        return self.users[who][0]


def make_people(app, names):
    """Accounts named admin, staff, ... (one Argon2 hash shared); {name: (id, token)}."""
    pw = hash_password("correct-horse-battery")
    with app.app_context():
        made = {n: User(email=f"{n}-{uuid.uuid4().hex[:8]}@office.test", name=n.title(),
                        password_hash=pw) for n in names}
        db.session.add_all(made.values())
        db.session.commit()
        out = {n: (u.id, issue_token(u)) for n, u in made.items()}
        db.session.remove()
    return out


@pytest.fixture
def office(app):
    """Organizer A (admin, staff; venue from a small layout, one event) and organizer B
    (its own admin, venue, event), a buyer who belongs to nothing."""
    o = Office(app)
    o.users = make_people(app, ["admin", "staff", "other", "buyer"])
    with app.app_context():
        emails = {n: db.session.get(User, uid).email for n, (uid, _t) in o.users.items()}
        a = organizers.create_organizer(db.session, "Alpha Live", emails["admin"])
        organizers.add_member(db.session, a.id, emails["staff"], "staff")
        b = organizers.create_organizer(db.session, "Beta Shows", emails["other"])
        va = venues.create_venue(db.session, a.id, "Alpha Hall", "Europe/Amsterdam",
                                 small_layout())
        vb = venues.create_venue(db.session, b.id, "Beta Hall", "Europe/London", small_layout())
        tiers = [{"name": "Front", "price_cents": 5000}, {"name": "Back", "price_cents": 3000}]
        ea = event_admin.create_event(db.session, a.id, venue_id=va.id, name="Alpha night",
                                      starts_at=datetime(2031, 3, 1, 19), price_tiers=tiers)
        eb = event_admin.create_event(db.session, b.id, venue_id=vb.id, name="Beta night",
                                      starts_at=datetime(2031, 3, 1, 19), price_tiers=tiers)
        db.session.commit()
        o.ids = {"org_a": a.id, "org_b": b.id, "venue_a": va.id, "venue_b": vb.id,
                 "event_a": ea.id, "event_b": eb.id}
        db.session.remove()
    return o


def fingerprint(app):
    """A digest of every row of every table: equal before and after = nothing changed."""
    digest = hashlib.sha256()
    with app.app_context():
        for table in db.metadata.sorted_tables:
            rows = db.session.execute(sa.select(table).order_by(*table.primary_key.columns)).all()
            digest.update(f"{table.name}:{[tuple(r) for r in rows]!r}".encode())
        db.session.remove()
    return digest.hexdigest()


def buy(app, user_id, event_id, seat_ids, card_number="4242424242424242"):
    """Hold and pay for seats through the real tasks, in-process; returns the order id (or None)."""
    import time
    from booking.models import Hold, Order
    from booking.intake import run_here as run_inline
    from booking.runtime import runtime
    rt = runtime(app)
    with app.app_context():
        run_inline([{"kind": "hold", "user_id": user_id, "request_id": uuid.uuid4().hex,
                     "event_id": event_id, "seat_ids": list(seat_ids),
                     "received_at": time.time()}])
        hold_id = db.session.scalar(sa.select(Hold.id).where(Hold.user_id == user_id)
                                    .order_by(Hold.id.desc()))
        token = rt.processor.tokenize(number=card_number, exp_month=12, exp_year=2034,
                                      cvc="123", name="T")
        run_inline([{"kind": "pay", "user_id": user_id, "request_id": uuid.uuid4().hex,
                     "hold_id": hold_id, "idempotency_key": uuid.uuid4().hex,
                     "card_token": token.token, "brand": token.brand, "last4": token.last4}])
        db.session.remove()
        order_id = db.session.scalar(sa.select(Order.id).where(Order.hold_id == hold_id))
        db.session.remove()
    if order_id is not None:
        _wait_for_mail(app, order_id)
    return order_id


def _wait_for_mail(app, order_id):
    """The order's confirmation leaves in a background thread (the embedded mode): wait for
    it, so that a later fingerprint sees no row change that the test's calls did not make."""
    from booking.models import MailOutbox

    def settled():
        with app.app_context():
            pending = db.session.scalar(sa.select(sa.func.count()).select_from(MailOutbox).where(
                MailOutbox.order_id == order_id, MailOutbox.status == "pending"))
            db.session.remove()
        return pending == 0
    wait_until(settled, 30, f"order {order_id}'s confirmation e-mail sent")


def seat_ids_of(app, event_id, **where):
    """Ids of an event's seats matching column values (row='A', ...), in id order."""
    from booking.models import Seat
    with app.app_context():
        ids = db.session.scalars(sa.select(Seat.id).where(
            Seat.event_id == event_id, *[getattr(Seat, k) == v for k, v in where.items()])
            .order_by(Seat.id)).all()
        db.session.remove()
    return list(ids)
