"""Signed-out visitors watch seat maps live, read-only, within a per-IP cap, across two real
web processes behind the Redis message queue (the issue: a signed-out visitor's map still
showed a seat available 18 s after it was held elsewhere)."""
import time
import uuid

import socketio

from tests.conftest import create_event
from tests.harness import wait_until

CAP = {"MAX_ANONYMOUS_SOCKETS_PER_IP": "2"}


class Watcher:
    """A python-socketio client without credentials, recording seat changes and refusals."""

    def __init__(self, url):
        self.url = url
        self.sio = socketio.Client(reconnection=False)
        self.refusals = []
        self.seats = {}   # id -> (version, status)
        self.sio.on("connect_error", self.refusals.append)
        self.sio.on("seats_changed", lambda m: self._apply(m["seats"]))

    def _apply(self, seats):
        for s in seats:
            if s["id"] not in self.seats or self.seats[s["id"]][0] < s["version"]:
                self.seats[s["id"]] = (s["version"], s["status"])

    def connect(self):
        try:
            self.sio.connect(self.url, transports=["websocket"], wait_timeout=15)
        except socketio.exceptions.ConnectionError:
            return False
        return True

    def join(self, event_id):
        ack = self.sio.call("join_event", {"event_id": event_id}, timeout=15)
        assert ack["ok"], ack
        self._apply(ack["seats"])
        return ack

    def close(self):
        if self.sio.connected:
            self.sio.disconnect()


def test_signed_out_visitors_watch_live_within_a_cap_per_address(cluster, clean_db, buyers):
    event_id = create_event(clean_db, rows=1, per_row=6)
    cluster.worker(concurrency=1)
    web_a, web_b = cluster.web(extra_env=CAP), cluster.web(extra_env=CAP)
    watchers = []
    try:
        # A signed-out visitor on web B; a buyer on web A holds a seat.
        guest = Watcher(web_b.url)
        watchers.append(guest)
        assert guest.connect(), guest.refusals
        seat = guest.join(event_id)["seats"][0]["id"]
        assert guest.seats[seat] == (0, "available")
        ann = buyers(web_a.url)
        rid = uuid.uuid4().hex
        assert ann.call("hold", {"request_id": rid, "event_id": event_id,
                                 "seat_ids": [seat]})["ok"]
        assert ann.result_for("hold_result", rid)["ok"]
        started = time.monotonic()
        wait_until(lambda: guest.seats[seat] == (1, "held"), 5, "the watcher sees the hold")
        assert time.monotonic() - started < 2

        # The visitor may watch, never hold.
        ack = guest.sio.call("hold", {"request_id": "g", "event_id": event_id,
                                      "seat_ids": [seat + 1]}, timeout=15)
        assert ack["ok"] is False and ack["error"]["code"] == "unauthorized"

        # Two read-only sockets from this address across both processes; the third is
        # refused in the contract's shape, on either process.
        second = Watcher(web_a.url)
        watchers.append(second)
        assert second.connect(), second.refusals
        third = Watcher(web_b.url)
        watchers.append(third)
        assert not third.connect()
        [refusal] = third.refusals
        assert refusal["code"] == "limit_exceeded" and refusal["message"]
        assert refusal["details"] == {"limit": "anonymous_sockets", "max": 2}
        assert refusal["data"] == {k: refusal[k] for k in ("code", "message", "details")}
        # Buyers are not counted against it.
        assert buyers(web_b.url).sio.connected
        # A watcher that leaves frees its place.
        second.close()
        fourth = Watcher(web_b.url)
        watchers.append(fourth)
        wait_until(fourth.connect, 10, "a freed place is taken again", interval=0.5)
        fourth.join(event_id)
    finally:
        for w in watchers:
            w.close()
