"""Check-in: exactly once, decided by MariaDB, across web processes; forged, void,
wrong-event and non-staff scans refused with nothing changed."""
import threading
import time
import uuid

import requests

from tests.checkout_helpers import rows
from tests.tickets_helpers import Organizer, auth, buy, flask_cli, get_order


def _scan(url, token, code, **extra):
    return requests.post(f"{url}/api/v1/checkins", json={"code": code, **extra},
                         headers=auth(token), timeout=30)


def _tickets(db_url):
    return rows(db_url, "SELECT id, status, checked_in_at, gate, checked_in_by FROM tickets"
                        " ORDER BY id")


def test_twenty_concurrent_scans_over_two_web_processes_admit_once(cluster, clean_db, buyers):
    cluster.worker()
    webs = [cluster.web(), cluster.web()]
    org = Organizer(webs[0].url, clean_db, rows=1, per_row=4)
    buyer = buyers(webs[0].url)
    seats = [s["id"] for s in buyer.join(org.event_id)["seats"]]
    order_id = buy(buyer, org.event_id, seats[:2])
    ticket = get_order(webs[0].url, buyer.token, order_id)["tickets"][0]

    barrier = threading.Barrier(20)
    answers = [None] * 20

    def scan(i):
        barrier.wait()
        answers[i] = _scan(webs[i % 2].url, org.staff_token, ticket["code"],
                           gate=f"gate-{i}", event_id=org.event_id)
    threads = [threading.Thread(target=scan, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    codes = sorted(a.status_code for a in answers)
    assert codes == [201] + [409] * 19, [a.text for a in answers]
    winner = next(a.json() for a in answers if a.status_code == 201)
    assert winner["ticket"]["id"] == ticket["id"]
    assert winner["ticket"]["status"] == "checked_in"
    for a in answers:
        if a.status_code == 409:
            details = a.json()["error"]["details"]
            assert details["reason"] == "already_checked_in"
            assert details["checked_in_at"] == winner["checked_in_at"]
            assert details["gate"] == winner["gate"]
    row = [r for r in _tickets(clean_db) if r["id"] == ticket["id"]][0]
    assert row["status"] == "checked_in" and row["gate"] == winner["gate"]
    time.sleep(1.1)  # the staff account just used its 20 requests a second
    door = requests.get(f"{webs[1].url}/api/v1/events/{org.event_id}/door",
                        headers=auth(org.staff_token), timeout=10).json()
    assert door["sold"] == 2 and door["checked_in"] == 1


def test_forged_void_wrong_event_and_non_staff_scans_change_nothing(cluster, clean_db, buyers):
    cluster.worker()
    web = cluster.web()
    org = Organizer(web.url, clean_db, rows=1, per_row=4)
    other_org = Organizer(web.url, clean_db, rows=1, per_row=2)
    buyer = buyers(web.url)
    seats = [s["id"] for s in buyer.join(org.event_id)["seats"]]
    order_id = buy(buyer, org.event_id, seats[:2])
    tickets = get_order(web.url, buyer.token, order_id)["tickets"]
    code = tickets[0]["code"]
    # A second event of the same organizer: its scanner must refuse this ticket.
    second_event = int(flask_cli(
        clean_db, "booking", "create-event", "--name", "Matinee", "--venue", "Hall B",
        "--starts-at", "2030-06-02T14:00:00Z", "--rows", "1", "--seats-per-row", "2",
        "--price-cents", "1000", "--organizer", str(org.id)))
    refund = requests.post(f"{web.url}/api/v1/orders/{order_id}/refund",
                           json={"idempotency_key": uuid.uuid4().hex,
                                 "seat_ids": [tickets[1]["seat_id"]]},
                           headers=auth(org.admin_token), timeout=30)
    assert refund.status_code == 200, refund.text
    void_code = rows(clean_db, "SELECT code FROM tickets WHERE id = :t",
                     t=tickets[1]["id"])[0]["code"]
    before = _tickets(clean_db)

    prefix, kid, body = code.split(".")
    flipped = body[:-2] + ("A" if body[-2] != "A" else "B") + body[-1]
    for forged in (f"{prefix}.{kid}.{flipped}", "hello", "BX1.nokey." + body, "", "x" * 300):
        r = _scan(web.url, org.staff_token, forged)
        assert r.status_code == 422, (forged, r.text)
        assert r.json()["error"]["code"] == "invalid_request"

    r = _scan(web.url, org.staff_token, void_code)
    assert r.status_code == 409 and r.json()["error"]["details"]["reason"] == "void"

    r = _scan(web.url, org.staff_token, code, event_id=second_event)
    assert r.status_code == 409 and r.json()["error"]["details"]["reason"] == "wrong_event"

    for token in (buyer.token, other_org.staff_token, other_org.admin_token):
        r = _scan(web.url, token, code)
        assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
    assert requests.post(f"{web.url}/api/v1/checkins", json={"code": code},
                         timeout=10).status_code == 401
    assert _tickets(clean_db) == before

    # The admin may scan too; then the ticket is in, once.
    assert _scan(web.url, org.admin_token, code, gate="North").status_code == 201
    again = _scan(web.url, org.staff_token, code, gate="South")
    assert again.status_code == 409
    assert again.json()["error"]["details"]["gate"] == "North"
