"""SIGTERM drains a web process: readiness off at once, no new sockets, clients sent away.

Real processes: a Celery worker and web processes on MariaDB and Redis.
"""
import signal
import uuid

import pytest
import requests
import socketio
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import create_event
from tests.harness import Buyer, wait_until

# The notice is long enough for the checks made during it (readiness, refused connects,
# a request still accepted) to finish on a loaded machine.
DRAIN_ENV = {"DRAIN_NOTICE_SECONDS": "15", "DRAIN_GRACE_SECONDS": "0.5"}


def _readyz(url):
    try:
        r = requests.get(url + "/readyz", timeout=2)
        return r.status_code, r.json()
    except requests.RequestException:
        return None, None


def _samples(url):
    text = requests.get(url + "/metrics", timeout=5).text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_sigterm_drains_and_clients_recover_elsewhere(cluster, clean_db, buyers):
    event_id = create_event(clean_db, rows=1, per_row=6)
    cluster.worker()
    draining_web = cluster.web(extra_env=DRAIN_ENV, fork=False)   # its exit status is read
    other_web = cluster.web(extra_env=DRAIN_ENV)

    buyer = buyers(draining_web.url)
    notices, disconnects = [], []
    buyer.sio.on("draining", notices.append)
    buyer.sio.on("disconnect", lambda *reason: disconnects.append(reason))
    seats = [s["id"] for s in buyer.join(event_id)["seats"]]
    assert _readyz(draining_web.url)[1]["instance"]["sockets"] == 1

    draining_web.signal(signal.SIGTERM)

    # Readiness turns 503 at once, while the process still serves its sockets.
    wait_until(lambda: _readyz(draining_web.url)[0] == 503, 10, "readyz 503", draining_web)
    assert _readyz(draining_web.url)[1]["status"] == "draining"
    # New sessions are refused, by the polling handshake and by a direct WebSocket.
    handshake = requests.get(draining_web.url + "/socket.io/?EIO=4&transport=polling", timeout=5)
    assert handshake.status_code == 503 and handshake.json()["error"]["code"] == "busy"
    newcomer = socketio.Client(reconnection=False)
    with pytest.raises(socketio.exceptions.ConnectionError):
        newcomer.connect(draining_web.url, auth={"token": buyer.token}, transports=["websocket"],
                         wait_timeout=5)
    # Existing sockets still work during the notice period: this request is accepted.
    rid = uuid.uuid4().hex
    ack = buyer.call("hold", {"request_id": rid, "event_id": event_id, "seat_ids": seats[:2]})
    assert ack == {"ok": True, "request_id": rid, "queued": True}
    metrics = _samples(draining_web.url)
    assert metrics[("boxoffice_web_drains_total", ())] == 1
    assert metrics[("boxoffice_socket_connects_refused_total", (("reason", "draining"),))] >= 2

    # Then the socket is told to reconnect and its session is closed from the server side.
    wait_until(lambda: notices and disconnects, 60, "draining notice and disconnect")
    assert notices[0] == {"reconnect": True, "reason": "server_draining"}
    draining_web.popen.wait(60)
    assert draining_web.popen.returncode == 0, draining_web.tail()
    assert "draining: asking 1 sockets to reconnect" in draining_web.log_path.read_text()

    # The buyer comes back on another instance and re-sends what it has no result for:
    # the request was performed once, and its result is delivered.
    back = Buyer(other_web.url, buyer.token, buyer.user_id).connect()
    try:
        back.join(event_id)
        wait_until(lambda: back.call("hold", {"request_id": rid, "event_id": event_id,
                                              "seat_ids": seats[:2]})["queued"] is False,
                   30, "the accepted request done")
        result = back.result_for("hold_result", rid)
        assert result["ok"] and result["seat_ids"] == seats[:2]
    finally:
        back.close()
    buyer.close()


def test_sigterm_exits_cleanly_with_an_abandoned_polling_session(cluster, clean_db):
    cluster.worker()
    web = cluster.web(extra_env={"DRAIN_NOTICE_SECONDS": "0.2", "DRAIN_GRACE_SECONDS": "0.2",
                                 "DRAIN_TIMEOUT_SECONDS": "20"}, fork=False)  # exit status read
    # A polling client that opened a session and went away: nobody will take its close packet.
    handshake = requests.get(web.url + "/socket.io/?EIO=4&transport=polling", timeout=5)
    assert handshake.status_code == 200
    assert _readyz(web.url)[1]["instance"]["sockets"] == 1
    web.signal(signal.SIGTERM)
    web.popen.wait(30)
    # 0, not the exit code of the drain's last-resort timeout.
    assert web.popen.returncode == 0, web.tail()
    assert "not stopped after" not in web.log_path.read_text()
