"""The web tier's cached sale gates, read from MariaDB through a proxy the test cuts."""
import pytest
import sqlalchemy as sa
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from booking.waiting_room.gates import GateCache
from tests.conftest import create_event
from tests.conftest import through as _through


class _Clock:
    """time.monotonic for gates.py, moved by the test."""

    def __init__(self):
        self.now = 1000.0

    def monotonic(self):
        return self.now


def _cache(monkeypatch):
    clock = _Clock()
    monkeypatch.setattr("booking.waiting_room.gates.time", clock)
    return GateCache(), clock


def _set_room(url, event_id, room):
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE events SET waiting_room = :r WHERE id = :e"),
                     {"r": room, "e": event_id})
    engine.dispose()


def test_a_gate_is_read_again_once_its_second_is_over(clean_db, monkeypatch):
    event_id = create_event(clean_db, rows=1, per_row=2)
    gates, clock = _cache(monkeypatch)
    engine = sa.create_engine(clean_db)
    with Session(engine) as session:
        assert gates.get(session, event_id).room is None
        _set_room(clean_db, event_id, "open")
        clock.now += 0.5
        assert gates.get(session, event_id).room is None, "cached for a second"
        session.rollback()
        clock.now += 0.6
        assert gates.get(session, event_id).room == "open"
        assert gates.get(session, 10**9) is None
    engine.dispose()


def test_the_last_gate_is_served_while_the_database_is_gone(clean_db, db_proxy, monkeypatch):
    """A hold's ack reads no database: with the database cut off, the gate read before
    goes on being served (a refresh tried at most once a second), up to its limit; an
    event never read is an error; once the database is back the gate is read again."""
    event_id = create_event(clean_db, rows=1, per_row=2)
    gates, clock = _cache(monkeypatch)
    engine = sa.create_engine(_through(db_proxy, clean_db), pool_pre_ping=True)
    with Session(engine) as session:
        first = gates.get(session, event_id)
        assert first.room is None
        session.rollback()
        db_proxy.cut()
        _set_room(clean_db, event_id, "open")   # by someone who still reaches it
        clock.now += 5
        assert gates.get(session, event_id) == first
        # Rolled back: the caller's next statement meets the outage, not a pending rollback.
        with pytest.raises(OperationalError):
            session.execute(sa.text("SELECT 1"))
        session.rollback()
        with pytest.raises(OperationalError):
            gates.get(session, event_id + 1)
        session.rollback()

        db_proxy.restore()
        clock.now += 0.5
        assert gates.get(session, event_id) == first, "tried again within the second"
        clock.now += 0.6
        assert gates.get(session, event_id).room == "open"
        session.rollback()

        db_proxy.cut()
        clock.now += GateCache.STALE_LIMIT_SECONDS + 1
        with pytest.raises(OperationalError):
            gates.get(session, event_id)
    engine.dispose()
