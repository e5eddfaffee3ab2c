"""The back office's forms: what an admin submits is saved, and what is wrong is said next to
the field with nothing changed (CSRF itself is Flask-WTF's; it is off here)."""
import io
import json

import pytest
import sqlalchemy as sa

from booking.extensions import db
from booking.models import Event, Invitation, PriceTier, Seat, Venue
from tests.back_office import buy, fingerprint, seat_ids_of, small_layout


@pytest.fixture
def admin(app, office):
    app.config["WTF_CSRF_ENABLED"] = False
    c = app.test_client()
    with c.session_transaction() as s:
        s["_user_id"] = str(office.uid("admin"))
        s["_fresh"] = True
    return c


def _upload(data):
    return (io.BytesIO(data), "layout.json")


def test_venue_upload_says_what_is_wrong_and_makes_good_ones(app, admin, office):
    url = f"/manage/o/{office.ids['org_a']}/venues"
    before = fingerprint(app)
    for data, words in [(b"{not json", b"Not a JSON file"),
                        (json.dumps({**small_layout(), "tiers": []}).encode(), b"layout.tiers"),
                        (json.dumps(small_layout()).encode(), b"IANA time zone")]:
        r = admin.post(url, data={"name": "Hall 2", "timezone": "Nowhere/Else" if b"IANA" in words
                                  else "UTC", "layout": _upload(data)},
                       content_type="multipart/form-data")
        assert r.status_code == 200 and words in r.data, r.data[:2000]
    r = admin.post(url, data={"name": "Hall 2", "timezone": "UTC"},
                   content_type="multipart/form-data")
    assert b"Choose a layout file" in r.data
    assert fingerprint(app) == before
    r = admin.post(url, data={"name": "Hall 2", "timezone": "UTC",
                              "layout": _upload(json.dumps(small_layout()).encode())},
                   content_type="multipart/form-data")
    assert r.status_code == 302
    with app.app_context():
        assert db.session.scalar(sa.select(Venue.name).where(Venue.name == "Hall 2"))
        db.session.remove()


def test_event_forms_save_and_refuse(app, admin, office):
    org, venue, e = office.ids["org_a"], office.ids["venue_a"], office.ids["event_a"]
    before = fingerprint(app)
    new = f"/manage/o/{org}/events/new?venue_id={venue}"
    r = admin.post(new, data={"name": "Late show", "starts_at": "2031-04-01T20:00",
                              "currency": "EUR", "tier_0": "40", "tier_1": "cheap"})
    assert b"price_tiers.1.price_cents" in r.data
    r = admin.post(f"/manage/events/{e}/seats", data={"section": "Hall", "rows": "A",
                                                      "numbers": "3-x", "action": "block_kill"})
    assert b"Not a number or range" in r.data
    r = admin.post(f"/manage/events/{e}/sale", data={"action": "rate", "rate": "fast"})
    assert b"admission_rate_per_min" in r.data
    r = admin.post(f"/manage/events/{e}/sale", data={"action": "paused"})
    assert b"has no waiting room" in r.data
    assert fingerprint(app) == before
    r = admin.post(new, data={"name": "Late show", "starts_at": "2031-04-01T20:00",
                              "currency": "EUR", "tier_0": "40", "tier_1": "25.50",
                              "waiting_room": "on", "admission_rate": "90"})
    assert r.status_code == 302
    with app.app_context():
        made = db.session.scalar(sa.select(Event).where(Event.name == "Late show"))
        # 20:00 in Amsterdam on 1 April 2031 (summer time) is 18:00 UTC.
        assert made.starts_at.isoformat() == "2031-04-01T18:00:00"
        assert (made.waiting_room, made.admission_rate_per_min) == ("open", 90)
        assert db.session.get(PriceTier, (made.id, "Back")).price_cents == 2550
        db.session.remove()
    # A row blocked from the seats page; the sold tier's price locked on the edit page.
    r = admin.post(f"/manage/events/{e}/seats", data={"section": "Hall", "rows": "B",
                                                      "numbers": "", "action": "block_kill"})
    assert r.status_code == 302
    assert buy(app, office.uid("buyer"), e, seat_ids_of(app, e, row="A")[:1])
    r = admin.post(f"/manage/events/{e}/edit", data={"action": "tier", "tier": "Front",
                                                     "price": "99"})
    assert b"held or sold" in r.data
    page = admin.get(f"/manage/events/{e}/edit").data
    assert b"Locked</span> 1 of its seats is held or sold" in page
    with app.app_context():
        assert db.session.get(PriceTier, (e, "Front")).price_cents == 5000
        blocked = db.session.scalars(sa.select(Seat.blocked).where(Seat.event_id == e,
                                                                   Seat.row == "B")).all()
        assert set(blocked) == {"kill"}
        db.session.remove()
    r = admin.post(f"/manage/events/{e}/sale", data={"action": "now"})
    assert r.status_code == 302
    assert b"Every booking rule holds" in admin.get(f"/manage/events/{e}").data


def test_members_page_invites_and_refuses_nonsense(app, admin, office):
    url = f"/manage/o/{office.ids['org_a']}/members"
    r = admin.post(url, data={"action": "add", "email": "not-an-email", "role": "staff"})
    assert b"email" in r.data and b"That was not saved" in r.data
    r = admin.post(url, data={"action": "add", "email": "fresh@person.test", "role": "admin"})
    assert r.status_code == 302
    assert b"fresh@person.test" in admin.get(url).data
    with app.app_context():
        assert db.session.scalar(sa.select(Invitation.role)) == "admin"
        db.session.remove()
    before = fingerprint(app)
    r = admin.post(url, data={"action": "remove", "user_id": str(office.uid("admin"))})
    assert b"at least one admin" in r.data
    r = admin.post(url, data={"action": "remove", "user_id": "x"})
    assert b"Not a number" in r.data
    assert fingerprint(app) == before
    # Each change is saved and said once it is committed.
    with app.app_context():
        from booking.models import Membership, User
        buyer_email = db.session.get(User, office.uid("buyer")).email
        invitation_id = db.session.scalar(sa.select(Invitation.id))
        db.session.remove()
    for data, said in [({"action": "add", "email": buyer_email, "role": "staff"},
                        f"{buyer_email} is now staff."),
                       ({"action": "cancel", "invitation_id": str(invitation_id)},
                        "Invitation withdrawn."),
                       ({"action": "remove", "user_id": str(office.uid("staff"))},
                        "Member removed.")]:
        r = admin.post(url, data=data, follow_redirects=True)
        assert r.status_code == 200 and said.encode() in r.data, (data, r.data[:3000])
    with app.app_context():
        roles = dict(db.session.execute(sa.select(Membership.user_id, Membership.role).where(
            Membership.organizer_id == office.ids["org_a"])).all())
        assert roles == {office.uid("admin"): "admin", office.uid("buyer"): "staff"}
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Invitation)) == 0
        db.session.remove()
