"""Expiry is data: a lapsed hold is free at once, the sweep broadcasts it, and a buyer
who leaves loses their holds after the grace period (but not if they come back)."""
import time
import uuid

import sqlalchemy as sa

from tests.conftest import create_event
from tests.harness import wait_until

FAST = {"HOLD_TTL_SECONDS": "2", "SWEEP_INTERVAL_SECONDS": "0.5",
        "DISCONNECT_GRACE_SECONDS": "2"}


def _hold(buyer, event_id, seats):
    rid = uuid.uuid4().hex
    assert buyer.call("hold", {"request_id": rid, "event_id": event_id, "seat_ids": seats})["ok"]
    return buyer.result_for("hold_result", rid)


def _status(watcher, seat):
    return watcher.seat_versions.get(seat, (0, None))[1]


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
    time.sleep(2.2)
    taken = _hold(b, event_id, [s1])
    assert taken["ok"], taken
    wait_until(lambda: a.results("hold_closed"), 5, "A told its hold expired")
    assert a.results("hold_closed")[0] == {"hold_id": first["hold_id"], "event_id": event_id,
                                           "reason": "expired"}
    # s2 still points at A's lapsed hold until the sweep runs.
    assert _status(watcher, s2) == "held"
    cluster.beat(extra_env=FAST)
    wait_until(lambda: _status(watcher, s2) == "available", 15, "the sweep frees s2")


def test_sweep_expires_holds_and_tells_everyone(cluster, clean_db, buyers):
    """With beat running, a hold nobody pays turns available for every watcher."""
    event_id = create_event(clean_db, rows=1, per_row=4)
    cluster.worker(extra_env=FAST)
    cluster.beat(extra_env=FAST)
    web = cluster.web(extra_env=FAST)
    a, watcher = buyers(web.url), buyers(web.url)
    seat = watcher.join(event_id)["seats"][0]["id"]
    result = _hold(a, event_id, [seat])
    wait_until(lambda: _status(watcher, seat) == "held", 5, "held")
    wait_until(lambda: _status(watcher, seat) == "available", 10, "expired and swept")
    assert watcher.seat_versions[seat][0] == 2
    wait_until(lambda: a.results("hold_closed"), 5, "owner told")
    engine = sa.create_engine(clean_db)
    with engine.connect() as conn:
        status = conn.execute(sa.text("SELECT status FROM holds WHERE id = :h"),
                              {"h": result["hold_id"]}).scalar()
    engine.dispose()
    assert status == "expired"


def test_departed_buyer_loses_holds_returning_buyer_keeps_them(cluster, clean_db, buyers):
    """Gone past DISCONNECT_GRACE_SECONDS: released. Back within it: kept."""
    env = dict(FAST, HOLD_TTL_SECONDS="300")
    event_id = create_event(clean_db, rows=1, per_row=4)
    cluster.worker(extra_env=env)
    cluster.beat(extra_env=env)
    web = cluster.web(extra_env=env)
    leaver, returner, watcher = buyers(web.url), buyers(web.url), buyers(web.url)
    s1, s2 = [s["id"] for s in watcher.join(event_id)["seats"]][:2]
    assert _hold(leaver, event_id, [s1])["ok"]
    assert _hold(returner, event_id, [s2])["ok"]
    wait_until(lambda: _status(watcher, s1) == _status(watcher, s2) == "held", 5, "both held")

    leaver.close()
    returner.close()
    time.sleep(0.8)
    returner.connect()
    wait_until(lambda: _status(watcher, s1) == "available", 10, "leaver's hold released")
    time.sleep(3)  # well past the grace period
    assert _status(watcher, s2) == "held", "a buyer back within the grace keeps the hold"
