"""Checkout: every payment exact. Real web and worker processes, MariaDB and Redis.

Each test card's outcome end to end through the socket event, and each race of
the issue forced deterministically, with `booking audit` clean afterwards and
the simulated processor's ledger matching the orders to the cent.
"""
import threading

import requests

from tests.checkout_helpers import (DECLINE, GOOD, NO_FUNDS, PROC_ERROR, SLOW, audit, hold, pay,
                                    rows, scalar)
from tests.conftest import SECRET, create_event, lapse_hold
from tests.harness import wait_until


def _clean_audit(db_url):
    code, report = audit(db_url, SECRET)
    assert code == 0 and report["problems"] == [], report
    return report


def test_each_test_card_end_to_end(cluster, clean_db, buyers):
    """Declines keep the hold for another card; errors charge nothing; 4242 sells."""
    event_id = create_event(clean_db, rows=1, per_row=6, price=4500)
    cluster.worker()
    web = cluster.web()
    buyer, watcher = buyers(web.url), buyers(web.url)
    seats = [s["id"] for s in watcher.join(event_id)["seats"]]
    held = hold(buyer, event_id, seats[:2])
    hold_id = held["hold_id"]

    for number, code, reason in ((DECLINE, "payment_declined", "card_declined"),
                                 (NO_FUNDS, "payment_declined", "insufficient_funds"),
                                 (PROC_ERROR, "payment_error", None)):
        ack, result = pay(buyer, hold_id, number)
        assert ack["ok"] and ack["queued"] is True
        assert result["ok"] is False and result["error"]["code"] == code, result
        assert result["error"]["details"].get("reason") == reason
        status = scalar(clean_db, "SELECT status FROM holds WHERE id = :h", h=hold_id)
        assert status == "held", "a failed payment leaves the hold with the buyer"
    assert scalar(clean_db, "SELECT COUNT(*) FROM sim_charges WHERE status = 'captured'") == 0

    ack, result = pay(buyer, hold_id, GOOD)
    assert result["ok"] and result["hold_id"] == hold_id
    order_id = result["order_id"]
    wait_until(lambda: all(watcher.seat_versions[s][1] == "sold" for s in seats[:2]), 30,
               "watchers see the seats sold")
    order = requests.get(f"{web.url}/api/v1/orders/{order_id}",
                         headers={"Authorization": f"Bearer {buyer.token}"}).json()
    assert order["status"] == "paid" and order["amount_cents"] == 9000
    assert [s["id"] for s in order["seats"]] == seats[:2]
    assert order["payment"]["brand"] == "visa" and order["payment"]["last4"] == "4242"
    assert order["payment"]["reference"].startswith("sim_ch_")
    mine = requests.get(f"{web.url}/api/v1/orders",
                        headers={"Authorization": f"Bearer {buyer.token}"}).json()
    assert [o["id"] for o in mine] == [order_id]
    stranger = requests.get(f"{web.url}/api/v1/orders/{order_id}",
                            headers={"Authorization": f"Bearer {watcher.token}"})
    assert stranger.status_code == 404

    # The slow card: the answer takes 5 s, within the processor timeout.
    slow_hold = hold(buyer, event_id, seats[2:3])
    _ack, result = pay(buyer, slow_hold["hold_id"], SLOW, timeout=30)
    assert result["ok"]
    # Paying a paid hold again is refused in the ack, and nothing is charged.
    ack, _ = pay(buyer, hold_id, GOOD)
    assert ack["ok"] is False and ack["error"]["code"] == "conflict"
    report = _clean_audit(clean_db)
    [ev] = report["events"]
    assert ev["orders_paid"] == 2 and ev["revenue_cents"] == 3 * 4500
    assert ev["payments_captured_cents"] == 3 * 4500
    assert ev["seats"] == {"available": 3, "held": 0, "sold": 3}


def test_same_key_twice_charges_once(cluster, clean_db, buyers):
    """A double send with one idempotency key: one charge, the same order id both times."""
    event_id = create_event(clean_db, rows=1, per_row=4)
    cluster.worker(concurrency=2)
    cluster.worker(concurrency=2)
    web = cluster.web()
    buyer = buyers(web.url)
    held = hold(buyer, event_id, [buyer.join(event_id)["seats"][0]["id"]])
    results = []

    def send():
        results.append(pay(buyer, held["hold_id"], SLOW, key="one-key-for-both", timeout=40))
    threads = [threading.Thread(target=send) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    answers = [r for _a, r in results]
    assert all(a["ok"] for a in answers), answers
    assert answers[0]["order_id"] == answers[1]["order_id"]
    assert scalar(clean_db, "SELECT COUNT(*) FROM sim_charges") == 1
    assert scalar(clean_db, "SELECT COUNT(*) FROM orders") == 1
    _clean_audit(clean_db)


def test_two_keys_race_for_one_hold(cluster, clean_db, make_users):
    """Two different keys for one hold at once, via two web processes: one order, one charge."""
    from tests.harness import Buyer
    event_id = create_event(clean_db, rows=1, per_row=4)
    cluster.worker(concurrency=2)
    cluster.worker(concurrency=2)
    web1, web2 = cluster.web(), cluster.web()
    (uid, token), = make_users(1)
    tab1 = Buyer(web1.url, token, uid).connect()
    tab2 = Buyer(web2.url, token, uid).connect()
    try:
        seat = tab1.join(event_id)["seats"][0]["id"]
        held = hold(tab1, event_id, [seat])
        outcomes = {}
        barrier = threading.Barrier(2)

        def go(name, tab):
            barrier.wait()
            outcomes[name] = pay(tab, held["hold_id"], SLOW, timeout=40)
        threads = [threading.Thread(target=go, args=(n, t)) for n, t in
                   (("a", tab1), ("b", tab2))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        oks = [r for a, r in outcomes.values() if r and r["ok"]]
        refused = [(a, r) for a, r in outcomes.values() if not (r and r["ok"])]
        assert len(oks) == 1, outcomes
        [(ack, result)] = refused
        error = result["error"] if result else ack["error"]
        assert error["code"] == "conflict", error
        assert scalar(clean_db, "SELECT COUNT(*) FROM sim_charges WHERE status = 'captured'") == 1
        assert scalar(clean_db, "SELECT COUNT(*) FROM orders") == 1
        _clean_audit(clean_db)
    finally:
        tab1.close()
        tab2.close()


def test_pay_after_expiry_charges_nothing(cluster, clean_db, buyers):
    """A hold that expired is never paid: hold_expired, and the processor sees nothing."""
    event_id = create_event(clean_db, rows=1, per_row=4)
    cluster.worker()
    web = cluster.web()
    buyer = buyers(web.url)
    held = hold(buyer, event_id, [buyer.join(event_id)["seats"][0]["id"]])
    lapse_hold(clean_db, held["hold_id"])
    ack, _ = pay(buyer, held["hold_id"], GOOD)
    assert ack["ok"] is False and ack["error"]["code"] == "hold_expired"
    assert scalar(clean_db, "SELECT COUNT(*) FROM sim_charges") == 0
    assert scalar(clean_db, "SELECT COUNT(*) FROM payments") == 0


def test_processor_timeout_is_settled_by_reconciliation(cluster, clean_db, buyers):
    """No answer within the timeout: pending, then reconciliation finds the charge and sells."""
    env = {"PAYMENT_TIMEOUT_SECONDS": "1.5", "RECONCILE_INTERVAL_SECONDS": "1"}
    event_id = create_event(clean_db, rows=1, per_row=4)
    cluster.worker(extra_env=env)
    cluster.beat(extra_env=env)
    web = cluster.web(extra_env=env)
    buyer = buyers(web.url)
    held = hold(buyer, event_id, [buyer.join(event_id)["seats"][0]["id"]])
    ack, _ = pay(buyer, held["hold_id"], SLOW, wait=False)
    assert ack["ok"]
    wait_until(lambda: rows(clean_db, "SELECT status FROM payments")
               == [{"status": "pending"}], 10, "a pending payment")
    result = buyer.result_for("payment_result", ack["request_id"], timeout=30)
    assert result["ok"], result
    assert scalar(clean_db, "SELECT status FROM holds WHERE id = :h", h=held["hold_id"]) == "paid"
    _clean_audit(clean_db)


def test_worker_killed_between_charge_and_commit(cluster, clean_db, buyers):
    """kill -9 while the charge is made but not recorded: completed once, nothing lost."""
    env = {"PAYMENT_TIMEOUT_SECONDS": "8", "RECONCILE_INTERVAL_SECONDS": "1",
           "TASK_VISIBILITY_TIMEOUT_SECONDS": "5", "REQUEUE_AFTER_SECONDS": "5"}
    event_id = create_event(clean_db, rows=1, per_row=4)
    victim = cluster.worker(extra_env=env)
    web = cluster.web(extra_env=env)
    buyer = buyers(web.url)
    held = hold(buyer, event_id, [buyer.join(event_id)["seats"][0]["id"]])
    # The slow card records the charge at once, then answers 5 s later: the
    # worker is killed in between.
    ack, _ = pay(buyer, held["hold_id"], SLOW, wait=False)
    assert ack["ok"]
    wait_until(lambda: scalar(clean_db, "SELECT COUNT(*) FROM sim_charges") == 1, 30,
               "the processor charged")
    victim.kill9()
    assert scalar(clean_db, "SELECT status FROM payments") == "pending"
    cluster.worker(extra_env=env)
    cluster.beat(extra_env=env)
    result = buyer.result_for("payment_result", ack["request_id"], timeout=60)
    assert result["ok"], result
    assert scalar(clean_db, "SELECT COUNT(*) FROM orders") == 1
    assert scalar(clean_db, "SELECT COUNT(*) FROM sim_charges WHERE status = 'captured'") == 1
    _clean_audit(clean_db)
