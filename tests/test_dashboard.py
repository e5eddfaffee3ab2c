"""The live dashboard: who may join its room, what its figures say, and what it costs
(computed at most once a second per event, however many processes and watchers)."""
import time

import pytest

from booking import dashboard, sales
from booking.extensions import db, socketio
from booking.runtime import runtime
from tests.back_office import buy, seat_ids_of
from tests.conftest import REDIS_URL
from tests.harness import wait_until


def test_only_members_join_the_dashboard_room(app, office):
    e = office.ids["event_a"]
    for who, code in (("buyer", "not_found"), ("other", "not_found")):
        c = socketio.test_client(app, auth={"token": office.users[who][1]})
        ack = c.emit("join_dashboard", {"event_id": e}, callback=True)
        assert not ack["ok"] and ack["error"]["code"] == code
        c.disconnect()
    c = socketio.test_client(app, auth={"token": office.users["staff"][1]})
    for bad in (None, {"event_id": "1"}, [1]):
        ack = c.emit("join_dashboard", bad, callback=True)
        assert not ack["ok"] and ack["error"]["code"] == "invalid_request"
    ack = c.emit("join_dashboard", {"event_id": e}, callback=True)
    assert ack["ok"] and ack["figures"]["sales"]["seats"]["available"] == 10
    c.disconnect()


def test_the_figures_count_what_sold_and_how_fast_holds_were_answered(app, office):
    e = office.ids["event_a"]
    seats = seat_ids_of(app, e)
    buy(app, office.uid("buyer"), e, seats[:3])
    buy(app, office.uid("staff"), e, seats[5:6], card_number="4000000000000002")  # declined
    with app.app_context():
        figures = dashboard.compute_figures(app, e)
        db.session.remove()
    s = figures["sales"]
    assert s["seats"] == {"available": 6, "held": 1, "sold": 3, "blocked": 0}
    assert s["revenue_cents"] == 3 * 5000 and s["orders"] == 1
    assert [x["section"] for x in s["by_section"]] == ["Hall"]
    a = figures["activity"]
    assert sum(a["holds"]) == 2 and sum(a["orders"]) == 1 and len(a["minutes"]) == 30
    assert a["declines_10min"] == 1 and a["errors_10min"] == 0
    # The workers counted both hold answers for this event, with their latency.
    assert figures["latency"]["answers"] == 2 and figures["latency"]["p99_ms"] is not None


def test_percentiles_come_from_the_workers_counts(app):
    state = runtime(app).state
    now = time.time()
    items = [{"kind": "hold", "event_id": 7, "received_at": now - ms / 1000}
             for ms in [20] * 98 + [400, 900]]
    sales.record_hold_answers(state, "ns", items, now)
    sales.record_hold_answers(state, "ns", [{"kind": "release", "event_id": 7,
                                             "received_at": now - 5}], now)
    got = sales.latency_of(state, "ns", 7, now)
    assert got == {"answers": 100, "p50_ms": 25, "p99_ms": 500, "window_s": 30}
    assert sales.latency_of(state, "ns", 8, now)["p50_ms"] is None


@pytest.fixture
def shared_state(app, redis_namespace):
    """The app's shared state in the test Redis, as web processes have it (an app built with
    REDIS_URL would re-point the one global Socket.IO server at the message queue, which the
    later test-client tests cannot use)."""
    from booking.state.backends import RedisState
    rt = runtime(app)
    saved, saved_ns = rt.state, app.config["REDIS_NAMESPACE"]
    rt.state = RedisState(REDIS_URL)
    app.config["REDIS_NAMESPACE"] = redis_namespace
    yield
    rt.state, app.config["REDIS_NAMESPACE"] = saved, saved_ns


def test_figures_are_computed_once_a_second_whoever_asks(app, office, shared_state):
    e = office.ids["event_a"]
    asked = 0
    before = dashboard.COMPUTATIONS._value.get()
    started = time.time()
    # Asked as often as many processes' loops would, for 3 seconds: the lease in Redis
    # lets one computation a second through.
    while time.time() - started < 3:
        with app.app_context():
            body = dashboard.figures(app, e)
            db.session.remove()
        assert body["event_id"] == e
        asked += 1
    computed = dashboard.COMPUTATIONS._value.get() - before
    assert asked > 20
    assert 2 <= computed <= 4, f"{computed} computations for {asked} asks in 3 s"
    seconds = dashboard.COMPUTE_SECONDS.collect()[0]
    total = next(s.value for s in seconds.samples if s.name.endswith("_sum"))
    count = next(s.value for s in seconds.samples if s.name.endswith("_count"))
    print(f"\n{asked} asks, {computed} computations, mean {total / count * 1000:.1f} ms each")


def _pass(app, c, sent, now=None):
    """One pass of the dashboard loop; the figures it sent to the test client."""
    c.get_received()
    with app.app_context():
        dashboard.tick(app, sent, now=now)
        db.session.remove()
    return [m["args"][0] for m in c.get_received() if m["name"] == "dashboard"]


@pytest.fixture
def no_loop(monkeypatch):
    """The loop's passes run by the test alone (no background loop sending as well)."""
    dashboard.stop_loops()
    monkeypatch.setattr(dashboard, "_ensure_loop", lambda app: None)


def test_a_change_is_sent_at_once_unless_the_figures_are_under_a_second_old(app, office,
                                                                             no_loop):
    """The loop's pass (dashboard.tick): a seat change committed after the figures last sent
    gets newer figures to the room at once, or as soon as the one-second limit allows."""
    from booking.broadcast import iso_now
    e = office.ids["event_a"]
    c = socketio.test_client(app, auth={"token": office.users["staff"][1]})
    assert c.emit("join_dashboard", {"event_id": e}, callback=True)["ok"]
    app.extensions.pop("dashboard_figures", None)

    sent = {}
    first = _pass(app, c, sent)
    assert len(first) == 1 and first[0]["event_id"] == e
    assert _pass(app, c, sent) == []                  # nothing changed, not idle
    dashboard.seats_changed(e, iso_now())        # a change, figures under a second old:
    assert _pass(app, c, sent) == []                  # held back by the one-second limit
    time.sleep(dashboard.INTERVAL_S)
    after = _pass(app, c, sent)                       # the next pass after the second sends
    assert len(after) == 1 and after[0]["computed_at"] > first[0]["computed_at"]
    assert _pass(app, c, sent) == []
    time.sleep(dashboard.INTERVAL_S)
    dashboard.seats_changed(e, iso_now())        # figures over a second old: at once
    assert len(_pass(app, c, sent)) == 1
    # No change for IDLE_REFRESH_S: refreshed all the same (the clock moves some figures).
    assert _pass(app, c, sent) == []
    time.sleep(dashboard.INTERVAL_S)
    assert _pass(app, c, sent) == []                  # no change, not idle yet
    assert _pass(app, c, sent, now=time.monotonic() + dashboard.IDLE_REFRESH_S)
    c.disconnect()


def test_a_process_without_the_lease_waits_for_figures_newer_than_the_change(
        app, office, shared_state, no_loop):
    """Two processes' loops on one event: the one whose lease it is not does not resend the
    stored copy that predates a change; it sends the copy computed after it."""
    from booking.broadcast import iso_now
    e = office.ids["event_a"]
    c = socketio.test_client(app, auth={"token": office.users["staff"][1]})
    assert c.emit("join_dashboard", {"event_id": e}, callback=True)["ok"]
    ours, theirs = {}, {}

    time.sleep(dashboard.INTERVAL_S)             # the join's lease has run out
    assert len(_pass(app, c, theirs)) == 1                # "their" loop computes and stores
    assert len(_pass(app, c, ours)) == 1                  # ours sends the stored copy
    dashboard.seats_changed(e, iso_now())
    assert _pass(app, c, ours) == []                      # the stored copy predates the change
    time.sleep(dashboard.INTERVAL_S)
    got = _pass(app, c, ours)                             # the lease ran out: computed after it
    assert len(got) == 1 and got[0]["computed_at"] > _changes_of(e)


def _changes_of(event_id):
    return dashboard._changes[event_id]


def test_a_stopped_loop_sends_nothing_more(app, office):
    """stop_loops ends this process's loops: a loop left by a finished test's app once
    sent figures to the next test's socket (a fresh-clone run failed on it)."""
    from booking.broadcast import iso_now
    e = office.ids["event_a"]
    c = socketio.test_client(app, auth={"token": office.users["staff"][1]})
    assert c.emit("join_dashboard", {"event_id": e}, callback=True)["ok"]   # starts the loop
    time.sleep(dashboard.INTERVAL_S)
    c.get_received()
    dashboard.seats_changed(e, iso_now())
    wait_until(lambda: any(m["name"] == "dashboard" for m in c.get_received()), 10,
               "the loop sends figures after a change")
    dashboard.stop_loops()
    c.get_received()
    time.sleep(dashboard.INTERVAL_S)
    dashboard.seats_changed(e, iso_now())
    time.sleep(dashboard.INTERVAL_S + 10 * dashboard.TICK_S)
    assert [m for m in c.get_received() if m["name"] == "dashboard"] == []
