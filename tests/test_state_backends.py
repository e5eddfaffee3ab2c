"""One behaviour, two backends: each test runs against Redis and against process memory.

The Redis side is Lua scripts and pipelines; the embedded mode's side is Python
under a lock. The same tests drive both (the request ledger, presence, socket
slots and the waiting room's store), so that neither can drift from the other.
"""
import time
import uuid

import pytest

from limits import parse
from limits.storage import RedisStorage
from limits.strategies import SlidingWindowCounterRateLimiter

from booking.state.backends import LocalState, RedisState
from booking.state.ledger import (PENDING, QueueFull, RequestLedger, TooManyHolds,
                                  open_hold_changes, unix_time)
from booking.state.presence import Presence, SocketSlots
from booking.waiting_room import ADMITTED, PRE_QUEUE, QUEUED, LocalRoomStore, RedisRoomStore
from tests.conftest import REDIS_URL
from tests.harness import inside_one_minute


@pytest.fixture(params=["redis", "memory"])
def backend(request):
    """(state, namespace): a fresh namespace per test, so that tests share no key."""
    if request.param == "memory":
        return LocalState(), "t"
    namespace = f"{request.getfixturevalue('redis_namespace')}:{uuid.uuid4().hex[:8]}"
    return RedisState(REDIS_URL, rate_prefix=f"{namespace}:limits"), namespace


@pytest.fixture
def ledger(backend):
    return RequestLedger(*backend)


@pytest.fixture
def rooms(backend):
    state, namespace = backend
    inside_one_minute(10)
    if isinstance(state, RedisState):
        return RedisRoomStore(state.redis, namespace)
    return LocalRoomStore()


def _hold(uid, rid):
    return {"kind": "hold", "user_id": uid, "request_id": rid, "event_id": 1, "seat_ids": [1]}


# ------------------------------------------------------------------ the ledger

def test_a_request_is_pending_once_then_answered(ledger):
    assert ledger.lookup(1, "a") is None
    assert ledger.begin(_hold(1, "a")) is True
    assert ledger.begin(_hold(1, "a")) is False       # a concurrent repeat
    assert ledger.lookup(1, "a") == PENDING
    assert ledger.lookup(2, "a") is None              # another buyer's request_id is theirs
    assert ledger.depth() == 1
    ledger.finish_many([(1, "a", "hold_result", {"request_id": "a", "ok": True})])
    assert ledger.lookup(1, "a") == ("hold_result", {"request_id": "a", "ok": True})
    assert ledger.depth() == 0
    assert ledger.begin(_hold(1, "a")) is False       # answered: never performed again


def test_the_depth_bound_refuses_new_work_and_forget_frees_it(ledger):
    assert ledger.begin(_hold(1, "a"), bound=2)
    assert ledger.begin(_hold(2, "b"), bound=2)
    with pytest.raises(QueueFull):
        ledger.begin(_hold(3, "c"), bound=2)
    assert ledger.lookup(3, "c") is None              # refused: nothing recorded
    ledger.forget(1, "a")
    assert ledger.lookup(1, "a") is None and ledger.depth() == 1
    assert ledger.begin(_hold(3, "c"), bound=2)


def test_a_buyers_hold_requests_in_flight_are_capped(ledger):
    assert ledger.begin(_hold(1, "a"), holds_cap=2)
    assert ledger.begin(_hold(1, "b"), holds_cap=2)
    with pytest.raises(TooManyHolds):
        ledger.begin(_hold(1, "c"), holds_cap=2)
    assert ledger.begin(_hold(2, "c"), holds_cap=2)   # another buyer's cap is theirs
    # A hold answered leaves the group; a release never entered it.
    ledger.finish_many([(1, "a", "hold_result", {})])
    assert ledger.begin(_hold(1, "c"), holds_cap=2)
    ledger.forget(1, "b")
    assert ledger.begin(_hold(1, "d"), holds_cap=2)


def test_overdue_requests_come_back_once_per_interval(ledger):
    ledger.begin(_hold(1, "a"))
    ledger.begin(_hold(1, "b"))
    ledger.finish_many([(1, "b", "hold_result", {})])
    assert ledger.overdue(60) == []                   # nothing that old
    time.sleep(0.05)
    assert [i["request_id"] for i in ledger.overdue(0.01)] == ["a"]
    assert ledger.overdue(0.5) == []                  # re-stamped when returned
    assert ledger.depth() == 1


def test_finished_and_late_answers_are_counted_per_second(ledger):
    assert ledger.finished_per_second() == 0 and ledger.answer_shares() == (0.0, 0.0)
    ledger.finish_many([(1, f"r{i}", "hold_result", {}) for i in range(20)], late=2, slow=5)
    assert ledger.finished_per_second(window_s=10) == 2.0
    assert ledger.answer_shares() == (pytest.approx(0.1), pytest.approx(0.25))
    assert ledger.answer_shares(now=time.time() + 10) == (0.0, 0.0)


def _budget(spec, identity):
    """(counter key, limit, window s) of one limit, as booking.ratelimits builds it."""
    item = parse(spec)
    return item.key_for(identity, "global"), item.amount, item.get_expiry()


def test_admit_counts_every_budget_or_none(backend):
    state, _ns = backend
    inside_one_minute(10)
    tight, loose = _budget("3/minute", "account:1"), _budget("4/minute", "ip:a")
    for _ in range(3):
        assert state.admit([tight, loose]) == ("new", None)
    outcome, (index, seconds) = state.admit([loose, tight])
    assert (outcome, index) == ("limited", 1)         # which budget is spent
    assert 0 < seconds <= 60                          # when a slot frees
    # Refused: nothing counted, so the loose budget has one left.
    assert state.admit([loose]) == ("new", None)
    assert state.admit([loose])[0] == "limited"
    assert state.admit([_budget("3/minute", "account:2")]) == ("new", None)  # its own budget


def test_a_limited_answer_never_says_retry_after_zero(backend):
    """A budget filled within the millisecond its counter was made: the counter's time to
    live is then exactly two windows, and the remainder arithmetic once answered 0 s (a
    client told to retry at once, into the same refusal). Many budgets, each filled fast."""
    state, _ns = backend
    inside_one_minute(10)
    for n in range(300):
        budget = _budget("1/minute", f"account:{n}")
        assert state.admit([budget]) == ("new", None)
        outcome, (_index, seconds) = state.admit([budget])
        assert outcome == "limited" and 0 < seconds <= 60, (n, seconds)


def test_admit_budgets_are_the_counters_flask_limiter_uses_for_rest(backend):
    """One budget for REST (Flask-Limiter's sliding-window-counter strategy) and sockets."""
    state, namespace = backend
    inside_one_minute(10)
    if isinstance(state, RedisState):
        storage = RedisStorage(REDIS_URL, key_prefix=f"{namespace}:limits")
    else:
        storage = state.rate_storage
    strategy = SlidingWindowCounterRateLimiter(storage)
    item = parse("4/minute")
    budget = _budget("4/minute", "account:7")
    assert strategy.hit(item, "account:7", "global")
    assert strategy.hit(item, "account:7", "global")
    assert state.admit([budget]) == ("new", None)
    assert state.admit([budget]) == ("new", None)
    assert state.admit([budget])[0] == "limited"       # 2 REST calls + 2 events
    assert not strategy.hit(item, "account:7", "global")


def test_admit_looks_up_and_begins_in_one_call(ledger):
    inside_one_minute(10)
    budgets = [_budget("100/minute", "account:1")]
    assert ledger.admit(budgets, 1, "a") == ("new", None)          # a lookup only
    assert ledger.lookup(1, "a") is None
    assert ledger.admit(budgets, 1, "a", _hold(1, "a"), holds_cap=2) == ("ok", None)
    assert ledger.admit(budgets, 1, "a", _hold(1, "a"), holds_cap=2) == ("seen", PENDING)
    ledger.finish_many([(1, "a", "hold_result", {"ok": True, "hold_id": 5,
                                                  "expires_at": "2099-01-01T00:00:00Z"})],
                       opened=[(1, 5, time.time() + 300)])
    assert ledger.admit(budgets, 1, "a") == ("seen", ("hold_result", {
        "ok": True, "hold_id": 5, "expires_at": "2099-01-01T00:00:00Z"}))
    tight = [_budget("1/minute", "account:9")]
    assert ledger.admit(tight, 9, "x", _hold(9, "x"))[0] == "ok"
    outcome, _ = ledger.admit(tight, 9, "y", _hold(9, "y"))
    assert outcome == "limited" and ledger.lookup(9, "y") is None   # limited: not begun


def test_a_large_batch_of_answers_is_finished_at_once(ledger):
    """1,200 answers (more than the Redis script removes from the index per command),
    with open holds gained and lost and counters, in one finish_many."""
    inside_one_minute(10)
    now = time.time()
    for i in range(1200):
        assert ledger.begin(_hold(i % 7, f"r{i}"), holds_cap=1000)
    assert ledger.depth() == 1200
    ledger.finish_many([(i % 7, f"r{i}", "hold_result", {"ok": True, "hold_id": i})
                        for i in range(1200)], late=3,
                       opened=[(u, 100 + u, now + 300) for u in range(7)],
                       closed=[(0, 100)], counts={"t:extra": 5})
    assert ledger.depth() == 0
    assert ledger.lookup(3, "r3") == ("hold_result", {"ok": True, "hold_id": 3})
    assert ledger.lookup(1199 % 7, "r1199") == ("hold_result", {"ok": True, "hold_id": 1199})
    assert ledger.finished_per_second(window_s=10) == 120.0
    # Buyer 0's one open hold was closed in the same call; buyer 1's counts.
    assert ledger.begin(_hold(0, "n0"), holds_cap=1)
    with pytest.raises(TooManyHolds):
        ledger.begin(_hold(1, "n1"), holds_cap=1)
    state = ledger.state
    if isinstance(state, RedisState):
        key = ledger._open_key(1)
        assert 300 < state.redis.ttl(key) <= 360       # kept as long as its last hold
        assert 0 < state.redis.ttl(next(iter(state.redis.scan_iter(f"{ledger.done_prefix}:*"))))


def test_open_holds_recorded_by_the_workers_count_against_the_cap(ledger):
    now = time.time()
    ledger.finish_many([], opened=[(1, 10, now + 300), (1, 11, now + 300), (2, 12, now + 300)])
    with pytest.raises(TooManyHolds) as refused:
        ledger.begin(_hold(1, "a"), holds_cap=2)
    assert refused.value.open_holds == 2
    assert ledger.lookup(1, "a") is None
    assert ledger.begin(_hold(2, "b"), holds_cap=2)     # one open + this one in flight
    with pytest.raises(TooManyHolds) as refused:
        ledger.begin(_hold(2, "c"), holds_cap=2)
    assert refused.value.open_holds == 1
    ledger.finish_many([], closed=[(1, 10)])            # released, paid, closed
    assert ledger.begin(_hold(1, "a"), holds_cap=2)


def test_an_open_hold_stops_counting_at_its_expiry(ledger):
    """A lost 'ended' update never locks a buyer out beyond the hold's own expiry."""
    now = time.time()
    ledger.finish_many([], opened=[(1, 10, now + 0.3), (1, 11, now + 300)])
    with pytest.raises(TooManyHolds):
        ledger.begin(_hold(1, "a"), holds_cap=2)
    time.sleep(0.4)
    assert ledger.begin(_hold(1, "a"), holds_cap=2)


def test_open_holds_re_derived_replace_what_the_ledger_had(ledger):
    now = time.time()
    ledger.finish_many([], opened=[(1, 10, now + 300), (1, 11, now + 300)])
    ledger.reset_open_holds(1, {12: now + 300, 13: now - 1})   # 13 expired: not counted
    assert ledger.begin(_hold(1, "a"), holds_cap=2)
    with pytest.raises(TooManyHolds):
        ledger.begin(_hold(1, "b"), holds_cap=2)
    ledger.reset_open_holds(1, {})
    assert ledger.begin(_hold(1, "b"), holds_cap=2)


def test_open_hold_changes_read_answers_and_notices():
    results = [
        (1, "h1", "hold_result", {"ok": True, "hold_id": 5, "expires_at": "2030-01-01T00:00:00Z"}),
        (1, "h2", "hold_result", {"ok": False, "error": {"code": "seat_unavailable"}}),
        (2, "r1", "release_result", {"ok": True, "hold_id": 6}),
        (3, "p1", "payment_result", {"ok": True, "hold_id": 7, "order_id": 1}),
        (3, "p2", "payment_result", {"ok": False, "error": {"code": "payment_declined"}}),
    ]
    notices = [(4, "hold_closed", {"hold_id": 8, "event_id": 1, "reason": "expired"}),
               (4, "seats_changed", {})]
    opened, closed = open_hold_changes(results, notices)
    assert opened == [(1, 5, unix_time("2030-01-01T00:00:00Z"))]
    assert unix_time("2030-01-01T00:00:00Z") == 1893456000.0
    assert closed == [(2, 6), (3, 7), (4, 8)]


# ------------------------------------------------------- presence and sockets

def test_presence_keeps_each_buyers_last_time(backend):
    state, namespace = backend
    presence = Presence(state, 30, namespace)
    presence.touch([1, 2], now=100.0)
    presence.touch([2], now=150.5)
    assert presence.last_seen([1, 2, 3]) == {1: 100.0, 2: 150.5}


def test_socket_slots_cap_an_account_and_forget_stale_sockets(backend):
    state, namespace = backend
    slots = SocketSlots(state, namespace, cap=2)
    assert slots.take(1, "s1") and slots.take(1, "s2")
    assert not slots.take(1, "s3")
    assert slots.take(1, "s1")                        # the same socket again: still counted once
    assert slots.take(2, "s3")                        # another account
    slots.release(1, "s1")
    assert slots.take(1, "s3")
    # A process that died stops refreshing its sockets: they stop counting.
    key = f"{namespace}:sockets:1"
    now = time.time()
    assert not state.slot_take(key, "s4", now, now - 60, 2, 120)
    assert state.slot_take(key, "s4", now + 100, now + 50, 2, 120)
    state.slot_touch([(key, "s4")], now + 200, 120)
    assert state.slot_take(key, "s5", now + 200, now + 150, 2, 120)
    assert not state.slot_take(key, "s6", now + 200, now + 150, 2, 120)


# ------------------------------------------------------ the waiting room store

def test_the_pre_queue_is_drawn_once_then_newcomers_queue_behind(rooms):
    for uid, ticket in ((1, 30), (2, 10), (3, 20)):
        place = rooms.join(7, uid, 100.0, ticket)
        assert place["state"] == PRE_QUEUE
    assert place["pre_queue"] == 3
    assert rooms.join(7, 1, 101.0, 99)["pre_queue"] == 3   # once per account
    assert not rooms.drawn(7)
    assert rooms.draw(7) == 3
    assert rooms.draw(7) == 0
    assert rooms.drawn(7)
    assert rooms.queued(7) == [2, 3, 1]                     # ticket order
    place = rooms.join(7, 4, 102.0, 1)
    assert (place["state"], place["ahead"]) == (QUEUED, 3)  # after the draw: at the back
    assert rooms.join(7, 1, 103.0, 5)["ahead"] == 2
    assert rooms.queued(7, 2) == [2, 3]
    assert rooms.known_events() == [7]


def test_admission_follows_the_rate_in_queue_order(rooms):
    rooms.draw(7)
    for uid in (1, 2, 3, 4):
        rooms.join(7, uid, 100.0, 0)
    assert rooms.admit(7, 100.0, 60.0, 10, 900, 100) == []  # the first tick starts the clock
    admitted = rooms.admit(7, 102.0, 60.0, 10, 900, 100)    # 60/min for 2 s: two
    assert admitted == [(1, 1002.0, 1), (2, 1002.0, 2)]
    assert rooms.seq(7) == 2
    assert rooms.admit(7, 103.0, 60.0, 10, 900, 0) == []    # max_n 0: nobody
    place = rooms.join(7, 1, 103.0, 0)
    assert (place["state"], place["expires_at"], place["seq"]) == (ADMITTED, 1002.0, 2)
    assert rooms.join(7, 3, 103.0, 0)["ahead"] == 0
    assert rooms.sizes(7, now=103.0) == {"pre_queue": 0, "queued": 2, "admitted_active": 2,
                                         "admitted_total": 2}
    # An admission that ran out unused: the buyer is a newcomer, at the back.
    place = rooms.join(7, 2, 2000.0, 0)
    assert (place["state"], place["ahead"]) == (QUEUED, 2)


def test_admission_credit_is_capped_by_the_burst_and_kept_low_while_empty(rooms):
    rooms.draw(7)
    rooms.admit(7, 0.0, 600.0, 3, 900, 100)
    for uid in range(1, 11):
        rooms.join(7, uid, 0.0, 0)
    assert len(rooms.admit(7, 60.0, 600.0, 3, 900, 100)) == 3  # a minute's credit, burst 3
    assert len(rooms.admit(7, 60.0, 600.0, 3, 900, 100)) == 0
    rooms.admit(7, 70.0, 600.0, 50, 900, 100)                  # empties the queue
    assert rooms.empty(7)
    rooms.admit(7, 200.0, 600.0, 50, 900, 100)                 # idle: credit stays at most 1
    for uid in range(20, 25):
        rooms.join(7, uid, 200.0, 0)
    assert len(rooms.admit(7, 200.0, 600.0, 50, 900, 100)) == 1


def test_rate_lock_and_full_update_marks(rooms):
    assert rooms.current_rate(7) is None
    rooms.set_rate(7, 120)
    assert rooms.current_rate(7) == 120.0
    assert rooms.try_lock(7, ttl=5)
    assert not rooms.try_lock(7, ttl=5)
    rooms.unlock(7)
    assert rooms.try_lock(7, ttl=5)
    assert rooms.full_update_due(7, 100.0, 10, mark=True)
    assert not rooms.full_update_due(7, 105.0, 10)
    assert rooms.full_update_due(7, 110.0, 10)
    assert rooms.stats([7])[7]["rate"] == 120.0
