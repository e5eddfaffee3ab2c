"""The scaled-out path end to end: web process -> Celery worker -> MariaDB -> sockets."""
import uuid

from tests.conftest import create_event


def test_hold_and_release_through_real_processes(cluster, clean_db, buyers):
    event_id = create_event(clean_db, rows=2, per_row=5)
    cluster.worker()
    web = cluster.web()
    buyer = buyers(web.url)
    watcher = buyers(web.url)
    seats = [s["id"] for s in watcher.join(event_id)["seats"]][:2]

    rid = uuid.uuid4().hex
    ack = buyer.call("hold", {"request_id": rid, "event_id": event_id, "seat_ids": seats})
    assert ack == {"ok": True, "request_id": rid, "queued": True}
    result = buyer.result_for("hold_result", rid)
    assert result["ok"] and result["seat_ids"] == seats

    from tests.harness import wait_until
    wait_until(lambda: all(watcher.seat_versions.get(s, (0, ""))[1] == "held" for s in seats),
               30, "watcher sees held")

    rel = uuid.uuid4().hex
    assert buyer.call("release", {"request_id": rel, "hold_id": result["hold_id"]})["ok"]
    assert buyer.result_for("release_result", rel)["ok"]
    wait_until(lambda: all(watcher.seat_versions[s] == (2, "available") for s in seats),
               30, "watcher sees available again")
