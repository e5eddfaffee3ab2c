"""Ops commands: `booking create-event`, `booking seed-demo` and `booking audit`.

Scripts and the local cluster parse these commands' stdout, so the tests pin what
they print there (the event id last; the audit's JSON alone) as well as the rows
they write.
"""
import json
import os
import subprocess
import sys
from datetime import timedelta

import pytest
import sqlalchemy as sa

from booking.commands import DEMO_EMAIL, DEMO_PASSWORD, DEMO_SECTIONS
from booking.extensions import db
from booking.models import Event, Hold, Seat, User, Venue, utcnow
from tests.conftest import SECRET, create_event
from tests.contract import row_counts
from tests.harness import ROOT

CREATE = ["booking", "create-event", "--name", "Winter Ball", "--venue", "Old Hall",
          "--starts-at", "2030-12-31T21:00:00+01:00", "--rows", "3", "--seats-per-row", "4",
          "--price-cents", "1999"]
DEMO_SEATS = sum(rows * per_row for _, rows, per_row, _ in DEMO_SECTIONS)


def _events(app):
    with app.app_context():
        events = db.session.scalars(sa.select(Event).order_by(Event.id)).all()
        db.session.expunge_all()
        db.session.remove()
    return events


def _seats(app, event_id):
    with app.app_context():
        seats = db.session.scalars(
            sa.select(Seat).where(Seat.event_id == event_id).order_by(Seat.id)).all()
        db.session.expunge_all()
        db.session.remove()
    return seats


def test_create_event_prints_its_id_last(app, runner):
    """The id on stdout's last line names an event with ROWS x SEATS_PER_ROW priced seats."""
    result = runner.invoke(args=CREATE)
    assert result.exit_code == 0, result.output
    event_id = int(result.stdout.strip().splitlines()[-1])
    [event] = _events(app)
    assert event.id == event_id
    assert event.name == "Winter Ball" and event.currency == "EUR"
    # The offset is honoured: 21:00 at +01:00 is 20:00 UTC.
    assert event.starts_at.isoformat() == "2030-12-31T20:00:00"
    seats = _seats(app, event_id)
    assert len(seats) == 12
    assert {(s.section, s.row) for s in seats} == {("Main", r) for r in "ABC"}
    assert {s.number for s in seats} == {1, 2, 3, 4}
    assert {(s.price_cents, s.status, s.version) for s in seats} == {(1999, "available", 0)}


def test_create_event_options(app, runner):
    """--currency and --section are used; a second event reuses the venue by name."""
    result = runner.invoke(args=CREATE + ["--currency", "gbp", "--section", "Balcony"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(args=CREATE)
    assert result.exit_code == 0, result.output
    first, second = _events(app)
    assert first.currency == "GBP"
    assert _seats(app, first.id)[0].label == "Balcony A1"
    assert first.venue_id == second.venue_id
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Venue)) == 1
        db.session.remove()


def test_create_event_in_a_real_process(clean_db):
    """The real `flask --app wsgi booking create-event`: its log lines do not follow the id."""
    event_id = create_event(clean_db, rows=2, per_row=3, price=500, real_process=True)
    engine = sa.create_engine(clean_db)
    with engine.connect() as conn:
        n = conn.scalar(sa.select(sa.func.count()).select_from(Seat.__table__)
                        .where(Seat.__table__.c.event_id == event_id))
    engine.dispose()
    assert n == 6


def _create_with(flag, value):
    """CREATE with one option set to value (added if CREATE lacks it)."""
    args = list(CREATE)
    if flag in args:
        args[args.index(flag) + 1] = value
    else:
        args += [flag, value]
    return args


@pytest.mark.parametrize("flag, value, exit_code", [
    ("--starts-at", "next tuesday", 2),
    ("--rows", "0", 2),
    ("--seats-per-row", "-3", 2),
    ("--price-cents", "-1", 2),
    ("--rows", "many", 2),
    ("--currency", "EURO", 1),
    ("--currency", "E1R", 1),
    ("--name", "n" * 201, 1),      # longer than the column: refused, not a database error
    ("--name", "   ", 1),
    ("--venue", "v" * 201, 1),
    ("--section", "s" * 41, 1),
])
def test_create_event_refuses_bad_options(app, runner, flag, value, exit_code):
    """Bad options fail with a message, a non-zero exit and no id, and create nothing."""
    before = row_counts(app)
    result = runner.invoke(args=_create_with(flag, value))
    assert result.exit_code == exit_code, result.output
    assert result.stdout.strip() == ""
    assert result.stderr.strip()
    assert row_counts(app) == before


def test_create_event_requires_its_options(app, runner):
    result = runner.invoke(args=["booking", "create-event", "--name", "Nameless"])
    assert result.exit_code == 2
    assert row_counts(app)["events"] == 0


def test_seed_demo_creates_the_demo(app, runner):
    """One demo event with every demo seat, and a demo buyer who can sign in."""
    result = runner.invoke(args=["booking", "seed-demo"])
    assert result.exit_code == 0, result.output
    [event] = _events(app)
    assert len(_seats(app, event.id)) == DEMO_SEATS
    assert event.starts_at > utcnow()
    r = app.test_client().post("/api/v1/session",
                               json={"email": DEMO_EMAIL, "password": DEMO_PASSWORD})
    assert r.status_code == 200, r.get_json()


def test_seed_demo_twice_duplicates_nothing(app, runner):
    """`make run` seeds on every start: the second run must leave every table as it was."""
    assert runner.invoke(args=["booking", "seed-demo"]).exit_code == 0
    after_first = row_counts(app)
    result = runner.invoke(args=["booking", "seed-demo"])
    assert result.exit_code == 0, result.output
    assert row_counts(app) == after_first
    assert after_first["events"] == 1 and after_first["users"] == 3
    assert after_first["seats"] == DEMO_SEATS


def test_seed_demo_keeps_existing_events(app, runner):
    """On a database with events, seeding adds the demo accounts but no demo event."""
    assert runner.invoke(args=CREATE).exit_code == 0
    result = runner.invoke(args=["booking", "seed-demo"])
    assert result.exit_code == 0, result.output
    assert [e.name for e in _events(app)] == ["Winter Ball"]
    with app.app_context():
        assert DEMO_EMAIL in db.session.scalars(sa.select(User.email)).all()
        db.session.remove()


def test_audit_of_an_empty_database(runner):
    """Nothing sold, nothing wrong: empty lists, exit 0."""
    result = runner.invoke(args=["booking", "audit"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"events": [], "problems": []}


def test_audit_counts_a_clean_event(app, runner):
    """A fresh event is reported seat by status with no orders and no problem."""
    assert runner.invoke(args=["booking", "seed-demo"]).exit_code == 0
    [event] = _events(app)
    result = runner.invoke(args=["booking", "audit", "--event", str(event.id)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"events": [{
        "event_id": event.id, "seats": {"available": DEMO_SEATS, "held": 0, "sold": 0},
        "orders_paid": 0, "revenue_cents": 0, "payments_captured_cents": 0,
        "refunded_cents": 0}], "problems": []}


def test_audit_reports_a_seat_held_long_past_expiry(app, runner):
    """A hold the sweep should long have released is a problem: listed, exit 1."""
    assert runner.invoke(args=CREATE).exit_code == 0
    [event] = _events(app)
    with app.app_context():
        user = User(email="late@example.test", name="", password_hash="x")
        db.session.add(user)
        db.session.flush()
        expired = utcnow() - timedelta(minutes=10)
        hold = Hold(user_id=user.id, event_id=event.id, status="held", amount_cents=1999,
                    currency="EUR", expires_at=expired)
        db.session.add(hold)
        db.session.flush()
        seat = db.session.scalars(sa.select(Seat).where(Seat.event_id == event.id)).first()
        seat.status, seat.hold_id, seat.hold_expires_at, seat.version = (
            "held", hold.id, expired, 1)
        db.session.commit()
        seat_id = seat.id
        db.session.remove()
    result = runner.invoke(args=["booking", "audit"])
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    assert report["events"][0]["seats"] == {"available": 11, "held": 1, "sold": 0}
    assert [(p["kind"], p["seat_id"]) for p in report["problems"]] == [
        ("seat_held_past_expiry", seat_id)]


def test_audit_in_a_real_process_prints_json_alone(clean_db):
    """The real command: stdout is one JSON document (logs go to stderr), exit 0."""
    create_event(clean_db, rows=1, per_row=2)
    env = dict(os.environ, DATABASE_URL=clean_db, SECRET_KEY=SECRET, LOG_LEVEL="DEBUG")
    env.pop("REDIS_URL", None)
    out = subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", "booking", "audit"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["problems"] == []
    assert report["events"][0]["seats"] == {"available": 2, "held": 0, "sold": 0}


THEATRE = ROOT / "docs" / "examples" / "theatre-2000.json"
ON_LAYOUT = ["booking", "create-event", "--name", "Gala", "--venue", "Example Theatre",
             "--starts-at", "2030-12-31T20:00:00Z", "--layout", str(THEATRE)]


def test_create_event_on_a_layout_file(app, runner):
    """--layout makes the venue from the file and one seat per layout seat, priced by tier;
    a second event on the same venue name reuses the venue."""
    result = runner.invoke(args=ON_LAYOUT + ["--tier-price", "Premium=9000",
                                             "--tier-price", "Standard=5000",
                                             "--price-cents", "2000"])
    assert result.exit_code == 0, result.output
    event_id = int(result.stdout.strip().splitlines()[-1])
    seats = _seats(app, event_id)
    from booking.layouts import expand_layout, load_layout
    expected = expand_layout(load_layout(json.loads(THEATRE.read_text())))
    assert len(seats) == len(expected)
    assert {(s.label, s.x, s.y, s.tier) for s in seats} == {
        (e["label"], e["x"], e["y"], e["tier"]) for e in expected}
    prices = {s.tier: s.price_cents for s in seats}
    assert prices == {"Premium": 9000, "Standard": 5000, "Restricted": 2000}
    result = runner.invoke(args=ON_LAYOUT + ["--price-cents", "100"])
    assert result.exit_code == 0, result.output
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Venue)) == 1


@pytest.mark.parametrize("extra, words", [
    (["--price-cents", "100", "--rows", "3"], "--layout replaces"),
    (["--tier-price", "Premium=9000"], "No price for tier"),
    (["--price-cents", "100", "--tier-price", "Balcony=100"], "Balcony"),
    (["--price-cents", "100", "--tier-price", "Premium"], "TIER=CENTS"),
])
def test_create_event_on_a_layout_refuses_bad_options(app, runner, extra, words):
    before = row_counts(app)
    result = runner.invoke(args=ON_LAYOUT + extra)
    assert result.exit_code != 0
    assert words in result.output
    assert row_counts(app) == before


def test_create_event_refuses_a_bad_layout_file(app, runner, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"format": "boxoffice-venue-layout", "version": 1}))
    before = row_counts(app)
    result = runner.invoke(args=ON_LAYOUT[:-1] + [str(bad), "--price-cents", "100"])
    assert result.exit_code == 1
    assert "layout.plan" in result.output and "layout.sections" in result.output
    bad.write_text("{not json")
    result = runner.invoke(args=ON_LAYOUT[:-1] + [str(bad), "--price-cents", "100"])
    assert result.exit_code == 2 and "not JSON" in result.output
    assert row_counts(app) == before


@pytest.mark.parametrize("flag, value", [("--name", "n" * 201), ("--currency", "EURO"),
                                         ("--venue", "v" * 201)])
def test_create_event_on_a_layout_checks_names(app, runner, flag, value):
    before = row_counts(app)
    args = ON_LAYOUT + ["--price-cents", "100"]
    args = args + [flag, value] if flag not in args else [
        value if i and args[i - 1] == flag else a for i, a in enumerate(args)]
    result = runner.invoke(args=args)
    assert result.exit_code == 1, result.output
    assert row_counts(app) == before
