"""Password hashing runs off the eventlet hub: a burst of logins on a real web process
(`python wsgi.py`) does not delay another socket's acks on that process."""
import statistics
import threading
import time
import uuid

import requests
import socketio

BURST = 16


def test_a_burst_of_logins_does_not_delay_another_sockets_ack(cluster):
    # Login limits opened wide: this test is about CPU, not about limits.
    web = cluster.web(extra_env={"REDIS_URL": "", "LOGIN_EMAIL_RATE_LIMIT": "1000/second",
                                 "LOGIN_IP_RATE_LIMIT": "1000/second"}).url
    email = f"burst-{uuid.uuid4().hex[:8]}@example.test"
    r = requests.post(web + "/api/v1/users",
                      json={"email": email, "password": "correct-horse-battery"}, timeout=30)
    assert r.status_code == 201, r.text
    client = socketio.Client(reconnection=False)
    client.connect(web, auth={"token": r.json()["token"]}, transports=["websocket"],
                   wait_timeout=15)

    def ack_ms():
        t0 = time.perf_counter()
        assert client.call("leave_event", {"event_id": 1}, timeout=30)["ok"]
        return (time.perf_counter() - t0) * 1000

    quiet = [ack_ms() for _ in range(20)]
    statuses, done = [], threading.Event()

    def login():
        statuses.append(requests.post(web + "/api/v1/session", json={
            "email": email, "password": "wrong-password-123"}, timeout=60).status_code)

    logins = [threading.Thread(target=login) for _ in range(BURST)]
    started = time.perf_counter()
    for t in logins:
        t.start()
    during = []

    def watch():
        while not done.is_set():
            during.append(ack_ms())
            time.sleep(0.01)
    watcher = threading.Thread(target=watch)
    watcher.start()
    for t in logins:
        t.join()
    burst_ms = (time.perf_counter() - started) * 1000
    done.set()
    watcher.join()
    client.disconnect()

    assert statuses == [401] * BURST
    # The burst was real work: 16 Argon2 verifications take a while even on every core.
    assert burst_ms > 150, burst_ms
    print(f"quiet median {statistics.median(quiet):.1f} ms; during the burst "
          f"({burst_ms:.0f} ms, {len(during)} acks) max {max(during):.1f} ms")
    # With Argon2 on the hub the process answers nothing while it hashes (measured on
    # main: 4 acks in a 9 s burst, each 1.5 to 3.7 s). Off the hub it keeps answering;
    # the bounds leave room for a machine shared with other work.
    ranked = sorted(during)
    assert len(during) >= burst_ms / 200, (burst_ms, len(during))
    assert ranked[int(len(ranked) * 0.9)] < 150, (burst_ms, ranked[-10:])
    assert ranked[-1] < 1500, (burst_ms, ranked[-10:])
