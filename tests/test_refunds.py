"""Refunds by an organizer's admin: processor refunds by key, tickets void, seats free again
live on other buyers' maps, the buyer e-mailed; refused and unanswered refunds end in a
defined state. Real web and worker processes, MariaDB, Redis, a real SMTP server."""
import uuid

import requests

from tests.checkout_helpers import audit, hold, rows, scalar
from tests.conftest import SECRET
from tests.harness import wait_until
from tests.tickets_helpers import Organizer, SmtpServer, auth, buy, get_order, wait_for


def _refund(url, token, order_id, key=None, seat_ids=None):
    body = {"idempotency_key": key or uuid.uuid4().hex}
    if seat_ids is not None:
        body["seat_ids"] = seat_ids
    return requests.post(f"{url}/api/v1/orders/{order_id}/refund", json=body,
                         headers=auth(token), timeout=30)


def _clean_audit(db_url):
    code, report = audit(db_url, SECRET)
    assert code == 0 and report["problems"] == [], report
    return report


def test_refund_frees_seats_live_and_tells_the_buyer(cluster, clean_db, buyers):
    smtp = SmtpServer().start()
    try:
        env = {"SMTP_URL": smtp.url}
        cluster.worker(extra_env=env)
        web1, web2 = cluster.web(extra_env=env), cluster.web(extra_env=env)
        org = Organizer(web1.url, clean_db, rows=1, per_row=6, price=2000)
        buyer = buyers(web1.url)
        watcher = buyers(web2.url)  # another buyer, on another web process
        seats = [s["id"] for s in watcher.join(org.event_id)["seats"]]
        order_id = buy(buyer, org.event_id, seats[:3])
        wait_until(lambda: watcher.seat_versions[seats[0]][1] == "sold", 10, "sold seen")
        sold_version = watcher.seat_versions[seats[0]][0]
        wait_for(lambda: len(smtp.inbox.orders()) == 1, 30)

        # Who may not: the buyer, a stranger (404: not their organizer), staff (403).
        key = uuid.uuid4().hex
        assert _refund(web1.url, buyer.token, order_id, key).status_code == 404
        assert _refund(web1.url, org.staff_token, order_id, key).status_code == 403
        bad = _refund(web1.url, org.admin_token, order_id, key, seat_ids=[seats[4]])
        assert bad.status_code == 422 and "seat_ids" in bad.json()["error"]["details"]["fields"]
        assert _refund(web1.url, org.admin_token, order_id, "no spaces!").status_code == 422
        assert scalar(clean_db, "SELECT COUNT(*) FROM refunds") == 0

        r = _refund(web1.url, org.admin_token, order_id, key, seat_ids=[seats[0]])
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["status"] == "partially_refunded" and body["refund"]["status"] == "succeeded"
        by_seat = {t["seat_id"]: t for t in body["tickets"]}
        assert by_seat[seats[0]]["status"] == "void" and by_seat[seats[0]]["code"] is None
        assert by_seat[seats[1]]["status"] == "valid"
        # Live on the other buyer's map, through the other web process.
        wait_until(lambda: watcher.seat_versions[seats[0]] == (sold_version + 1, "available"),
                   10, "the refunded seat available on the watcher's map")
        # The same key again refunds nothing more.
        again = _refund(web1.url, org.admin_token, order_id, key, seat_ids=[seats[0]])
        assert again.status_code == 200 and again.json()["refund"]["id"] == body["refund"]["id"]
        assert scalar(clean_db, "SELECT COUNT(*) FROM sim_refunds") == 1
        twice = _refund(web1.url, org.admin_token, order_id, seat_ids=[seats[0]])
        assert twice.status_code == 409
        assert twice.json()["error"]["details"]["reason"] == "already_refunded"

        # The freed seat can be bought by someone else.
        other = hold(watcher, org.event_id, [seats[0]])
        assert other["ok"], other

        rest = _refund(web1.url, org.admin_token, order_id)
        assert rest.status_code == 200 and rest.json()["status"] == "refunded"
        assert {t["status"] for t in get_order(web1.url, buyer.token, order_id)["tickets"]} \
            == {"void"}
        mails = wait_for(lambda: (m := smtp.inbox.orders()) and len(m) == 3 and m, 30)
        refund_mail = mails[-1]
        assert "Refund for your order" in refund_mail["Subject"]
        assert "VOID (refunded)" in refund_mail.get_body(("plain",)).get_content()
        assert "VOID (refunded)" in refund_mail.get_body(("html",)).get_content()
        report = _clean_audit(clean_db)
        event = report["events"][0]
        assert event["refunded_cents"] == 6000 and event["revenue_cents"] == 0
        assert scalar(clean_db, "SELECT refunded_cents FROM sim_charges") == 6000
    finally:
        smtp.stop()


def test_refused_refund_changes_nothing(cluster, clean_db, buyers):
    cluster.worker()
    web = cluster.web(extra_env={"SIM_REFUND_MODE": "refuse"})
    org = Organizer(web.url, clean_db, rows=1, per_row=4)
    buyer = buyers(web.url)
    seats = [s["id"] for s in buyer.join(org.event_id)["seats"]]
    order_id = buy(buyer, org.event_id, seats[:2])
    r = _refund(web.url, org.admin_token, order_id)
    assert r.status_code == 502 and r.json()["error"]["code"] == "payment_error"
    assert r.json()["error"]["details"]["reason"] == "refused_by_processor"
    assert rows(clean_db, "SELECT status FROM refunds") == [{"status": "failed"}]
    order = get_order(web.url, buyer.token, order_id)
    assert order["status"] == "paid" and {t["status"] for t in order["tickets"]} == {"valid"}
    assert scalar(clean_db, "SELECT COUNT(*) FROM seats WHERE status = 'sold'") == 2
    assert scalar(clean_db, "SELECT COUNT(*) FROM tickets WHERE refund_id IS NOT NULL") == 0
    _clean_audit(clean_db)


def test_unanswered_refund_is_settled_by_reconciliation(cluster, clean_db, buyers):
    fast = {"PAYMENT_TIMEOUT_SECONDS": "1", "RECONCILE_INTERVAL_SECONDS": "1"}
    cluster.worker(extra_env=fast)
    web = cluster.web(extra_env={"SIM_REFUND_MODE": "timeout"})
    org = Organizer(web.url, clean_db, rows=1, per_row=4, price=1500)
    buyer = buyers(web.url)
    seats = [s["id"] for s in buyer.join(org.event_id)["seats"]]
    order_id = buy(buyer, org.event_id, seats[:2])
    r = _refund(web.url, org.admin_token, order_id, seat_ids=[seats[1]])
    assert r.status_code == 202, r.text
    assert r.json()["refund"]["status"] == "pending" and r.json()["status"] == "paid"
    # Meanwhile the ticket is neither usable at the door nor refundable again.
    again = _refund(web.url, org.admin_token, order_id, seat_ids=[seats[1]])
    assert again.status_code == 409
    assert again.json()["error"]["details"]["reason"] == "refund_pending"
    cluster.beat(extra_env=fast)
    wait_for(lambda: rows(clean_db, "SELECT status FROM refunds")[0]["status"] == "succeeded", 60)
    order = get_order(web.url, buyer.token, order_id)
    assert order["status"] == "partially_refunded"
    assert scalar(clean_db, "SELECT COUNT(*) FROM sim_refunds") == 1
    assert scalar(clean_db, "SELECT status FROM seats WHERE id = :s", s=seats[1]) == "available"
    _clean_audit(clean_db)
