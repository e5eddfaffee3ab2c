"""Races for seats between many buyers, two web processes and two Celery workers.

These prove the second promise with real concurrency: a seat is held for at
most one buyer however requests race, a multi-seat hold is all or nothing, every
accepted request is answered, and every watcher on every web process converges
to the database's final state.
"""
import threading
import time

from tests.conftest import create_event
from tests.harness import Buyer, wait_until
from tests.load import (Tracker, assert_consistent, connect_buyers, db_state, random_seats,
                        rng_for, run_parallel)


def _watchers(webs, token_user, event_id):
    watchers = []
    for web in webs:
        w = Buyer(web.url, token_user[1], token_user[0]).connect()
        w.join(event_id)
        watchers.append(w)
    return watchers


def _assert_watchers_converge(watchers, seats):
    final = {sid: (version, status) for sid, (status, version, _h) in seats.items()}
    for w in watchers:
        wait_until(lambda: all(w.seat_versions.get(s) == v for s, v in final.items()), 30,
                   f"watcher on {w.sio.connection_url} sees the final version of every seat")


def test_two_hundred_buyers_race_for_fifty_seats(cluster, clean_db, make_users):
    """200 clients over 2 web processes, 2 workers: no seat granted twice, all answered."""
    rng = rng_for("race")
    event_id = create_event(clean_db, rows=5, per_row=10)
    cluster.worker(concurrency=2)
    cluster.worker(concurrency=2)
    webs = [cluster.web(), cluster.web()]
    users = make_users(202)
    watchers = _watchers(webs, users[0], event_id)
    watchers += _watchers(webs[1:], users[1], event_id)
    seat_ids = sorted(watchers[0].seat_versions)
    clients = connect_buyers(users[2:], [w.url for w in webs])
    tracker = Tracker()
    started = time.monotonic()
    try:
        run_parallel([
            (lambda b=b: tracker.send(b, "hold", {"event_id": event_id,
                                                  "seat_ids": random_seats(rng, seat_ids)}))
            for b in clients])
        assert len(tracker.accepted) == len(clients), tracker.rejected
        tracker.wait_all_answered(60, clean_db)

        answers = tracker.answers()
        granted = {}
        for rid, result in answers.items():
            buyer, _kind, payload = tracker.accepted[rid]
            if result["ok"]:
                assert result["seat_ids"] == payload["seat_ids"]
                for s in result["seat_ids"]:
                    assert s not in granted, f"seat {s} granted to {granted[s]} and {rid}"
                    granted[s] = rid
            else:
                assert result["error"]["code"] == "seat_unavailable", result
                # All or nothing: a refused request names seats someone else got.
                assert set(result["error"]["details"]["seat_ids"]) <= set(payload["seat_ids"])
        assert granted, "no request succeeded at all"

        seats, holds, dup_records = db_state(clean_db, event_id)
        assert not dup_records
        held_by = assert_consistent(seats, holds)
        ok = {r["hold_id"]: r for r in answers.values() if r["ok"]}
        assert set(holds) == set(ok), "the database holds exactly the granted holds"
        for hold_id, result in ok.items():
            assert holds[hold_id][2] == result["seat_ids"]
            assert all(held_by[s] == hold_id for s in result["seat_ids"])
        assert {s for s, (st, _v, _h) in seats.items() if st == "held"} == set(granted)
        _assert_watchers_converge(watchers, seats)

        # Coalescing: each web process sends at most one seats_changed per event
        # per interval (100 ms), each carrying every seat that changed meanwhile.
        elapsed = time.monotonic() - started
        for w in watchers:
            batches = w.results("seats_changed")
            assert len(batches) <= elapsed / 0.1 + 2, (len(batches), elapsed)
            assert sum(len(b["seats"]) for b in batches) >= len(granted)
        assert max(len(b["seats"]) for b in watchers[0].results("seats_changed")) > 1
    finally:
        for b in clients + watchers:
            b.close()


def test_worker_killed_mid_run_loses_nothing(cluster, clean_db, make_users):
    """kill -9 one worker while buyers hold and release: all answered, nothing held wrongly."""
    rng = rng_for("kill")
    event_id = create_event(clean_db, rows=5, per_row=10)
    # Short recovery times, so that the dead worker's messages come back (by
    # the broker's visibility timeout, or the overdue-request sweep for a
    # message the broker lost) within the test's patience.
    env = {"TASK_VISIBILITY_TIMEOUT_SECONDS": "5", "REQUEUE_AFTER_SECONDS": "5"}
    victim = cluster.worker(concurrency=2, extra_env=env)
    cluster.worker(concurrency=2, extra_env=env)
    cluster.beat(extra_env=env)
    webs = [cluster.web(), cluster.web()]
    users = make_users(81)
    watchers = _watchers(webs, users[0], event_id)
    seat_ids = sorted(watchers[0].seat_versions)
    clients = connect_buyers(users[1:], [w.url for w in webs])
    tracker = Tracker()
    stop_at = time.monotonic() + 8

    def churn(buyer):
        while time.monotonic() < stop_at:
            rid, ack = tracker.send(buyer, "hold", {"event_id": event_id,
                                                    "seat_ids": random_seats(rng, seat_ids)})
            if not ack["ok"]:
                time.sleep(0.05)
                continue
            try:
                result = buyer.result_for("hold_result", rid, timeout=40)
            except AssertionError:
                return  # reported below by wait_all_answered
            if result["ok"]:
                time.sleep(rng.uniform(0, 0.2))
                rel, ack = tracker.send(buyer, "release", {"hold_id": result["hold_id"]})
                if ack["ok"]:
                    try:
                        buyer.result_for("release_result", rel, timeout=40)
                    except AssertionError:
                        return

    killer = threading.Timer(2.5, victim.kill9)
    killer.start()
    try:
        run_parallel([lambda b=b: churn(b) for b in clients])
        killer.join()
        assert not victim.alive()
        tracker.wait_all_answered(60, clean_db)
        results = tracker.results()
        assert len(results) > 100, "the load was too light to prove anything"
        for rid, answers in results.items():
            # A task the dead worker had committed but not acknowledged runs
            # again and re-sends its recorded result: the same answer, twice.
            assert all(a == answers[0] for a in answers), (rid, answers)

        seats, holds, dup_records = db_state(clean_db, event_id)
        assert not dup_records
        assert_consistent(seats, holds)
        ok_holds = {a[0]["hold_id"] for rid, a in results.items()
                    if tracker.accepted[rid][1] == "hold" and a[0]["ok"]}
        assert set(holds) == ok_holds, "every hold in the database was granted exactly once"
        released = {tracker.accepted[rid][2]["hold_id"] for rid, a in results.items()
                    if tracker.accepted[rid][1] == "release" and a[0]["ok"]}
        for hold_id in released:
            assert holds[hold_id][1] == "released"
        for sid, (status, _v, hold_id) in seats.items():
            if status == "held":
                assert hold_id in ok_holds - released, f"seat {sid} held by failed/released {hold_id}"
        _assert_watchers_converge(watchers, seats)
    finally:
        killer.cancel()
        for b in clients + watchers:
            b.close()
