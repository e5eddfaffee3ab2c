"""Expiry is data: a lapsed hold is free at once, the sweep broadcasts it, and a buyer
who leaves loses their holds after the grace period (but not if they come back).

Holds are lapsed by writing their expiry into the past (tests.conftest.lapse_hold),
not by sleeping past a short TTL: the product's own TTL (300 s) never runs out
during a test, so only the hold a test lapses is expired.
"""
import time
import uuid

import sqlalchemy as sa

from tests.conftest import create_event, lapse_hold
from tests.harness import wait_until

FAST = {"SWEEP_INTERVAL_SECONDS": "0.5"}
# Grace long enough that a reconnect on a loaded machine comes back within it.
GRACE_SECONDS = 6


def _hold(buyer, event_id, seats):
    rid = uuid.uuid4().hex
    assert buyer.call("hold", {"request_id": rid, "event_id": event_id, "seat_ids": seats})["ok"]
    return buyer.result_for("hold_result", rid)


def _status(watcher, seat):
    return watcher.seat_versions.get(seat, (0, None))[1]


def _hold_at(app, user, rid, event_id, seats, now):
    """A hold request decided in-process at the time `now`, committed: its Outcome."""
    from booking import holds
    from booking.extensions import db
    with app.app_context():
        out = holds.process_requests(db.session, [
            {"kind": "hold", "user_id": user, "request_id": rid, "event_id": event_id,
             "seat_ids": seats}], app.extensions["boxoffice"].settings, now=now)
        db.session.commit()
        return out


def test_lapsed_hold_is_claimable_at_once_then_swept(cluster, clean_db, buyers):
    """No beat running: a claim takes an expired seat at once; beat later frees the rest."""
    event_id = create_event(clean_db, rows=1, per_row=6)
    cluster.worker(extra_env=FAST)
    web = cluster.web(extra_env=FAST)
    a, b, watcher = buyers(web.url), buyers(web.url), buyers(web.url)
    s1, s2 = [s["id"] for s in watcher.join(event_id)["seats"]][:2]

    first = _hold(a, event_id, [s1, s2])
    assert first["ok"]
    assert not _hold(b, event_id, [s1])["ok"], "a live hold is not claimable"
    lapse_hold(clean_db, first["hold_id"])
    taken = _hold(b, event_id, [s1])
    assert taken["ok"], taken
    wait_until(lambda: a.results("hold_closed"), 30, "A told its hold expired")
    assert a.results("hold_closed")[0] == {"hold_id": first["hold_id"], "event_id": event_id,
                                           "reason": "expired"}
    # s2 still points at A's lapsed hold until the sweep runs.
    assert _status(watcher, s2) == "held"
    cluster.beat(extra_env=FAST)
    wait_until(lambda: _status(watcher, s2) == "available", 30, "the sweep frees s2")


def test_sweep_expires_holds_and_tells_everyone(cluster, clean_db, buyers):
    """With beat running, a hold nobody pays turns available for every watcher."""
    event_id = create_event(clean_db, rows=1, per_row=4)
    cluster.worker(extra_env=FAST)
    cluster.beat(extra_env=FAST)
    web = cluster.web(extra_env=FAST)
    a, watcher = buyers(web.url), buyers(web.url)
    seat = watcher.join(event_id)["seats"][0]["id"]
    result = _hold(a, event_id, [seat])
    wait_until(lambda: _status(watcher, seat) == "held", 30, "held")
    lapse_hold(clean_db, result["hold_id"])
    wait_until(lambda: _status(watcher, seat) == "available", 30, "expired and swept")
    assert watcher.seat_versions[seat][0] == 2
    wait_until(lambda: a.results("hold_closed"), 30, "owner told")
    engine = sa.create_engine(clean_db)
    with engine.connect() as conn:
        status = conn.execute(sa.text("SELECT status FROM holds WHERE id = :h"),
                              {"h": result["hold_id"]}).scalar()
    engine.dispose()
    assert status == "expired"


def test_departed_buyer_loses_holds_returning_buyer_keeps_them(cluster, clean_db, buyers):
    """Gone past DISCONNECT_GRACE_SECONDS: released. Back within it: kept."""
    env = dict(FAST, DISCONNECT_GRACE_SECONDS=str(GRACE_SECONDS))
    event_id = create_event(clean_db, rows=1, per_row=4)
    cluster.worker(extra_env=env)
    cluster.beat(extra_env=env)
    web = cluster.web(extra_env=env)
    leaver, returner, watcher = buyers(web.url), buyers(web.url), buyers(web.url)
    s1, s2 = [s["id"] for s in watcher.join(event_id)["seats"]][:2]
    assert _hold(leaver, event_id, [s1])["ok"]
    assert _hold(returner, event_id, [s2])["ok"]
    wait_until(lambda: _status(watcher, s1) == _status(watcher, s2) == "held", 30, "both held")

    leaver.close()
    returner.close()
    returner.connect()   # back at once: well within the grace
    wait_until(lambda: _status(watcher, s1) == "available", GRACE_SECONDS + 30,
               "leaver's hold released")
    # Both left at the same moment: the sweep that released the leaver's hold saw the
    # returner's too. Give it a whole grace period more to be wrong.
    time.sleep(GRACE_SECONDS)
    assert _status(watcher, s2) == "held", "a buyer back within the grace keeps the hold"


def test_expiry_is_decided_by_the_clock_the_services_are_given(app, make_users):
    """In-process, with now= given: a hold is claimable from the second its TTL runs out,
    not a second before; the sweep frees the rest of it at the same boundary."""
    from datetime import timedelta

    from booking import holds
    from booking.extensions import db
    from booking.models import Seat, utcnow
    from tests.test_holds_idempotency import _event

    (a, _), (b, _) = make_users(2)
    event_id, (s1, s2) = _event(app, seats=2)
    settings = app.extensions["boxoffice"].settings
    t0 = utcnow()
    ttl = timedelta(seconds=settings.hold_ttl_seconds)

    def hold(user, rid, seats, now):
        return _hold_at(app, user, rid, event_id, seats, now)

    first = hold(a, "a1", [s1, s2], t0).results[0][3]
    assert first["ok"], first
    early = hold(b, "b1", [s1], t0 + ttl - timedelta(seconds=1)).results[0][3]
    assert early["error"]["code"] == "seat_unavailable", early
    taken = hold(b, "b2", [s1], t0 + ttl)
    assert taken.results[0][3]["ok"], taken.results
    assert ("hold_closed" in [n[1] for n in taken.notices]), taken.notices

    with app.app_context():
        assert not holds.release_expired(db.session, now=t0 + ttl - timedelta(seconds=1)).seats
        db.session.rollback()
        swept = holds.release_expired(db.session, now=t0 + ttl)
        db.session.commit()
        assert [s["id"] for s in swept.seats[event_id].values()] == [s2]
        assert db.session.get(Seat, s2).status == "available"
        assert db.session.get(Seat, s1).status == "held"


def test_the_departed_buyer_check_reads_each_holder_once_and_only_held_holds(app, make_users):
    """holders(): every buyer with a hold not being paid, once however many holds;
    held_by(): those buyers' held holds only (a hold being paid is never released)."""
    from booking import holds
    from booking.extensions import db
    from booking.models import Hold
    from tests.test_holds_idempotency import _event

    (a, _), (b, _), (c, _) = make_users(3)
    event_id, seats = _event(app, seats=5)
    settings = app.extensions["boxoffice"].settings
    with app.app_context():
        out = holds.process_requests(db.session, [
            {"kind": "hold", "user_id": user, "request_id": rid, "event_id": event_id,
             "seat_ids": [seat]}
            for user, rid, seat in [(a, "a1", seats[0]), (a, "a2", seats[1]),
                                    (b, "b1", seats[2]), (c, "c1", seats[3])]], settings)
        db.session.commit()
        ids = {rid: payload["hold_id"] for _uid, rid, _e, payload in out.results}
        db.session.execute(sa.update(Hold).where(Hold.id == ids["b1"]).values(status="paying"))
        db.session.commit()

        assert sorted(holds.holders(db.session)) == sorted([a, c])
        assert holds.held_by(db.session, [a, b]) == sorted([ids["a1"], ids["a2"]])
        assert holds.held_by(db.session, []) == []
        db.session.rollback()


def test_the_sweep_skips_a_seat_a_request_is_deciding_on_instead_of_waiting(app, make_users,
                                                                           clean_db):
    """Another transaction holds the lock of one lapsed seat (a request deciding on it): the
    sweep frees the other seats at once, leaves that one and its hold alone if the hold
    keeps it, and frees it on its next turn, once the lock is gone. MariaDB's lock wait
    is 50 s here, so a sweep that waited would fail the test's 5 s."""
    from datetime import timedelta

    from booking import holds
    from booking.extensions import db
    from booking.models import Hold, Seat, utcnow
    from tests.test_holds_idempotency import _event

    (a, _), = make_users(1)
    event_id, (s1, s2, s3) = _event(app, seats=3)
    settings = app.extensions["boxoffice"].settings
    t0 = utcnow()
    later = t0 + timedelta(seconds=settings.hold_ttl_seconds)
    hold_id = _hold_at(app, a, "a1", event_id, [s1, s2, s3], t0).results[0][3]["hold_id"]

    engine = sa.create_engine(clean_db)
    other = engine.connect()
    try:
        transaction = other.begin()
        other.execute(sa.text("SET SESSION innodb_lock_wait_timeout = 50"))
        other.execute(sa.text("SELECT id FROM seats WHERE id = :s FOR UPDATE"), {"s": s2})
        with app.app_context():
            started = time.monotonic()
            swept = holds.release_expired(db.session, now=later)
            db.session.commit()
            assert time.monotonic() - started < 5
            assert sorted(swept.seats[event_id]) == [s1, s3]
            assert [n[2]["hold_id"] for n in swept.notices] == [hold_id]
            assert db.session.get(Seat, s2).status == "held"
            assert db.session.get(Hold, hold_id).status == "expired"
            db.session.rollback()
        transaction.rollback()
        with app.app_context():
            again = holds.release_expired(db.session, now=later)
            db.session.commit()
            assert sorted(again.seats[event_id]) == [s2]
            assert again.notices == []    # the hold was closed by the first sweep
            assert {db.session.get(Seat, s).status for s in (s1, s2, s3)} == {"available"}
    finally:
        other.close()
        engine.dispose()


def test_a_sweep_releases_what_had_run_out_when_it_started(app, make_users, monkeypatch):
    """In a sale holds run out every moment; a sweep that chased them until none was left
    ran for seconds. Hold B runs out while the sweep is busy with hold A: it stays for
    the next sweep (and is claimable meanwhile: lazy expiry). The sweep's start is fixed
    (workers.tasks.utcnow), so how fast this machine runs the test changes nothing."""
    from datetime import timedelta

    import workers.tasks
    from booking import holds
    from booking.extensions import db
    from booking.models import Seat, utcnow
    from tests.test_holds_idempotency import _event
    from workers.tasks import sweep_holds

    (a, _), (b, _) = make_users(2)
    event_id, (s1, s2) = _event(app, seats=2)
    settings = app.extensions["boxoffice"].settings
    ttl = timedelta(seconds=settings.hold_ttl_seconds)
    started = utcnow()
    b_runs_out = started + timedelta(seconds=1)
    for user, rid, seat, made in ((a, "a1", s1, started - ttl - timedelta(minutes=1)),
                                  (b, "b1", s2, b_runs_out - ttl)):
        out = _hold_at(app, user, rid, event_id, [seat], made)
        assert out.results[0][3]["ok"], out.results

    real, calls = holds.release_expired, []

    def busy_sweep(session, now=None, **kwargs):
        calls.append(now)
        out = real(session, now=now, **kwargs)
        if len(calls) == 1:   # hold B runs out meanwhile, on the wall clock
            time.sleep(max(0.0, (b_runs_out - utcnow()).total_seconds()) + 0.5)
        return out
    monkeypatch.setattr(holds, "release_expired", busy_sweep)
    monkeypatch.setattr(workers.tasks, "utcnow", lambda: started)
    sweep_holds.apply(throw=True)
    with app.app_context():
        assert db.session.get(Seat, s1).status == "available"
        assert db.session.get(Seat, s2).status == "held", "B ran out after the sweep started"
    assert calls == [started, started]
    monkeypatch.undo()
    sweep_holds.apply(throw=True)        # the next sweep, started now
    with app.app_context():
        assert db.session.get(Seat, s2).status == "available"
