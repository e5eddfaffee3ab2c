"""The waiting room: fair order, admission at the set rate, tokens that cannot be forged.

The first tests drive the room in one process (the embedded mode's in-memory
store, the real database) with explicit clock values, so that the rate and the
ops commands are checked exactly. The last one is the on-sale with real
processes: 500 socket clients wait on two web instances behind Redis, one web
process is killed and restarted mid-queue, and the admission task runs under
Celery beat and a worker.
"""
import statistics
import threading
import time
import uuid
from datetime import timedelta

import pytest
import redis
import socketio as socketio_client
import sqlalchemy as sa

from booking import waiting_room
from booking.extensions import db, socketio
from booking.models import Hold, utcnow
from tests.conftest import REDIS_URL, ops_command
from tests.harness import PYTHON, free_port, wait_until, _ready


def _cli(url, *args):
    return ops_command(url, "booking", *args)


def gated_event(url, on_sale_at, rate=None, rows=5, per_row=10):
    """An event with a waiting room, made by create-event (conftest.ops_command); its id."""
    args = ["create-event", "--name", "Gated night", "--venue", "Test Hall",
            "--starts-at", "2030-01-01T19:00:00Z", "--rows", str(rows),
            "--seats-per-row", str(per_row), "--price-cents", "2500",
            "--on-sale-at", on_sale_at, "--waiting-room"]
    if rate:
        args += ["--admission-rate", str(rate)]
    return int(_cli(url, *args).strip().splitlines()[-1])


def _iso(moment):
    return moment.isoformat() + "Z"


class _Sent:
    """A broadcaster that records what the admission tick sends (the embedded tests read it)."""

    def __init__(self, inner):
        self.inner = inner
        self.messages = []

    def to_users(self, messages):
        self.messages += messages
        self.inner.to_users(messages)

    def queue_positions(self, message):
        self.messages += [(u, "queue_update", p)
                          for u, p in waiting_room.position_updates(message)]
        self.inner.queue_positions(message)


def _tick(app, now, sent):
    """One run of the admission task at unix time now, its sends recorded by sent."""
    from workers.tasks import admit_waiting_buyers
    rt = app.extensions["boxoffice"]
    real, rt.broadcaster = rt.broadcaster, sent
    try:
        with app.app_context():
            out = admit_waiting_buyers.apply(kwargs={"now": now}, throw=True).get()
            db.session.remove()
            return out
    finally:
        rt.broadcaster = real


def _hold(client, event_id, seat_id, token=None):
    payload = {"request_id": uuid.uuid4().hex, "event_id": event_id, "seat_ids": [seat_id]}
    if token is not None:
        payload["admission_token"] = token
    return client.emit("hold", payload, callback=True)


def _seat_ids(app, event_id):
    with app.app_context():
        from booking import catalog
        ids = sorted(catalog.seat_prices(db.session, event_id))
        db.session.remove()
        return ids


@pytest.mark.app_config(USER_RATE_LIMIT="1000/second")
def test_early_arrivals_are_drawn_then_admitted_in_turn_with_tokens(app, clean_db, make_users):
    """Pre-queue before the on-sale, a draw at it, one admission a second at 60/min, tokens bound."""
    event_id = gated_event(clean_db, _iso(utcnow() + timedelta(hours=1)), rate=60)
    other_event = gated_event(clean_db, _iso(utcnow() - timedelta(hours=1)), rate=60)
    seats = _seat_ids(app, event_id)
    users = make_users(4)
    clients = [socketio.test_client(app, auth={"token": tok}) for _uid, tok in users]
    rt = app.extensions["boxoffice"]
    sent = _Sent(rt.broadcaster)

    for client in clients:
        ack = client.emit("join_event", {"event_id": event_id}, callback=True)
        assert ack["ok"] and ack["seats"] == []  # no map while waiting
        room = ack["waiting_room"]
        assert room["state"] == "pre_queue" and room["position"] is None
        # Honest about what it does not know: the range spans the whole draw.
        assert room["eta_range_s"][0] <= room["eta_s"] <= room["eta_range_s"][1]
    # Joining again (another tab) keeps the one place.
    again = clients[0].emit("join_event", {"event_id": event_id}, callback=True)
    assert again["waiting_room"]["pre_queue"] == 4

    # Before the on-sale nobody may hold, with or without a token.
    assert _hold(clients[0], event_id, seats[0])["error"]["details"]["reason"] == "not_admitted"

    # The on-sale: the draw happens at the first tick after it; admission starts then.
    with app.app_context():
        waiting_room.set_on_sale(db.session, event_id, utcnow())
        db.session.commit()
        db.session.remove()
    rt.gates = waiting_room.GateCache()
    t0 = time.time()
    assert _tick(app, t0, sent)[event_id] == 0
    first = {u: p for u, e, p in sent.messages if e == "queue_update" and p["event_id"] == event_id}
    assert sorted(p["position"] for p in first.values()) == [1, 2, 3, 4]
    order = sorted(first, key=lambda u: first[u]["position"])

    admitted = []
    for step in range(1, 5):
        sent.messages.clear()
        assert _tick(app, t0 + step, sent)[event_id] == 1  # 60 a minute: one a second
        admitted += [u for u, e, p in sent.messages if e == "admitted"]
        # Everyone still waiting moved up by one.
        for u, e, p in sent.messages:
            if e == "queue_update":
                assert p["position"] == order.index(u) + 1 - step
    assert admitted == order  # in the drawn order, each exactly once
    assert _tick(app, t0 + 10, sent)[event_id] == 0  # nobody left to admit

    uid_of = {uid: i for i, (uid, _t) in enumerate(users)}
    tokens = {}
    for client, (uid, _tok) in zip(clients, users):
        ack = client.emit("join_event", {"event_id": event_id}, callback=True)
        assert ack["waiting_room"]["state"] == "admitted" and ack["seats"]  # the map, now
        tokens[uid] = ack["waiting_room"]["admission_token"]
    me, them = users[0][0], users[1][0]
    mine = clients[uid_of[me]]
    with app.app_context():
        expired = waiting_room.issue_token(me, event_id, time.time() - 1)
        elsewhere = waiting_room.issue_token(me, other_event, time.time() + 600)
    forged = tokens[me][:-4] + ("AAAA" if not tokens[me].endswith("AAAA") else "BBBB")
    for token in (None, "", "not-a-token", forged, expired, elsewhere, tokens[them]):
        ack = _hold(mine, event_id, seats[0], token)
        assert ack["ok"] is False, token
        assert ack["error"]["code"] == "forbidden"
        assert ack["error"]["details"]["reason"] == "not_admitted"
    ack = _hold(mine, event_id, seats[0], tokens[me])
    assert ack["ok"] is True
    wait_until(lambda: _holds_of(app, me), 30, "the admitted buyer's hold")
    assert _holds_of(app, them) == []
    for client in clients:
        client.disconnect()


def _holds_of(app, user_id):
    with app.app_context():
        rows = db.session.scalars(sa.select(Hold.id).where(Hold.user_id == user_id)).all()
        db.session.remove()
        return rows


def _ops(runner, app, *args):
    """Run an ops command; forget this process's cached gates, as 2 s would."""
    result = runner.invoke(args=["booking", "waiting-room", *args])
    assert result.exit_code == 0, result.output
    app.extensions["boxoffice"].gates = waiting_room.GateCache()
    return result


def test_pause_stops_admission_and_drain_turns_the_room_off(app, clean_db, make_users, runner):
    """Ops commands: pause keeps places, rate changes the pace, drain empties then ungates."""
    event_id = gated_event(clean_db, _iso(utcnow() - timedelta(minutes=1)), rate=60)
    users = make_users(3)
    clients = [socketio.test_client(app, auth={"token": tok}) for _uid, tok in users]
    rt = app.extensions["boxoffice"]
    sent = _Sent(rt.broadcaster)
    t0 = time.time()
    _tick(app, t0, sent)  # the draw (of nobody): later arrivals queue in order
    for client in clients:
        ack = client.emit("join_event", {"event_id": event_id}, callback=True)
        assert ack["waiting_room"]["state"] == "queued"
    positions = [c.emit("join_event", {"event_id": event_id}, callback=True)
                 ["waiting_room"]["position"] for c in clients]
    assert positions == [1, 2, 3]  # first come, first served after the on-sale

    _ops(runner, app, "pause", str(event_id))
    assert _tick(app, t0 + 5, sent)[event_id] == 0
    paused = clients[0].emit("join_event", {"event_id": event_id}, callback=True)["waiting_room"]
    assert paused["position"] == 1 and paused["eta_s"] is None and paused["paused"]

    _ops(runner, app, "open", str(event_id))
    # The pause is not made up for: one a second from the reopening.
    assert _tick(app, t0 + 6, sent)[event_id] == 1
    _ops(runner, app, "rate", str(event_id), "120")
    _ops(runner, app, "drain", str(event_id))
    assert _tick(app, t0 + 7, sent)[event_id] == 2  # 120 a minute: two a second
    result = _ops(runner, app, "status", str(event_id))
    assert '"waiting_room": null' in result.stdout  # drained and empty: turned off
    late = make_users(1)[0]
    client = socketio.test_client(app, auth={"token": late[1]})
    ack = client.emit("join_event", {"event_id": event_id}, callback=True)
    assert "waiting_room" not in ack and ack["seats"]
    assert _hold(client, event_id, _seat_ids(app, event_id)[0])["ok"] is True
    for c in clients + [client]:
        c.disconnect()


# ---------------------------------------------------------------- real processes


class QueueClient:
    """A python-socketio client that re-joins on every (re)connect, as the page does."""

    def __init__(self, url, token, user_id, event_id, forwarded_for):
        self.url, self.token, self.user_id, self.event_id = url, token, user_id, event_id
        self.headers = {"X-Forwarded-For": forwarded_for}
        self.lock = threading.Lock()
        self.seen = []        # (seq, state, position) in arrival order: join acks and updates
        self.admitted = []    # admitted messages
        self.acks = []        # every join ack's waiting_room
        self.connects = 0
        self.sio = socketio_client.Client(reconnection=True, reconnection_delay=0.3,
                                          reconnection_delay_max=1.5)
        self.sio.on("connect", self._on_connect)
        self.sio.on("queue_update", self._on_update)
        self.sio.on("admitted", self._on_admitted)

    def connect(self):
        self.sio.connect(self.url, auth={"token": self.token}, headers=self.headers,
                         transports=["websocket"], wait_timeout=60)
        return self

    def _on_connect(self):
        self.connects += 1
        self.sio.emit("join_event", {"event_id": self.event_id}, callback=self._on_join)

    def _on_join(self, ack):
        with self.lock:
            if ack.get("ok"):
                room = ack["waiting_room"]
                self.acks.append(room)
                self.seen.append((room["seq"], room["state"], room["position"]))
            else:
                error = ack.get("error") or {}
                self.acks.append({"error": error})
                if error.get("code") in ("busy", "rate_limited"):
                    # Not now (a reconnect storm took the pool): join again after the
                    # pause the server names, as the pages do (waiting_room.js re-joins
                    # every 20-40 s; event.js after retry_after_s).
                    after = max(1.0, (error.get("details") or {}).get("retry_after_s") or 2)
                    threading.Timer(after, self._rejoin).start()

    def _rejoin(self):
        if self.sio.connected:
            self.sio.emit("join_event", {"event_id": self.event_id}, callback=self._on_join)

    def _on_update(self, data):
        with self.lock:
            self.seen.append((data["seq"], data["state"], data["position"]))

    def _on_admitted(self, data):
        with self.lock:
            self.admitted.append(data)

    def token_now(self):
        """The admission token, from the admitted message or a join ack (a reconnect's)."""
        with self.lock:
            for message in self.admitted:
                return message["admission_token"]
            for room in reversed(self.acks):
                if room.get("state") == "admitted":
                    return room["admission_token"]
        return None

    def hold(self, seat_id, token):
        payload = {"request_id": uuid.uuid4().hex, "event_id": self.event_id,
                   "seat_ids": [seat_id]}
        if token is not None:
            payload["admission_token"] = token
        return self.sio.call("hold", payload, timeout=30)

    def close(self):
        try:
            self.sio.disconnect()
        except Exception:
            pass


def _start_web(cluster, port, name):
    proc = cluster._start(name, [PYTHON, "wsgi.py", "--host", "127.0.0.1", "--port", str(port)])
    proc.url = f"http://127.0.0.1:{port}"
    wait_until(lambda: _ready(proc.url), 60, f"{name} ready", proc)
    return proc


def _ns_redis(cluster):
    return redis.Redis.from_url(REDIS_URL), cluster.env["REDIS_NAMESPACE"]


ADMISSION_TTL = 900


def _admitted(client, namespace, event_id):
    """[(user_id, unix time admitted)] in admission order, read from the room's store:
    each admitted buyer's token expiry is the tick's time plus ADMISSION_TTL."""
    expiries = client.hgetall(f"{namespace}:wr:{event_id}:adm")
    return sorted(((int(u), float(e) - ADMISSION_TTL) for u, e in expiries.items()),
                  key=lambda entry: entry[1])


def _connect_all(clients, parallel=8):
    errors = []

    def work(chunk):
        for c in chunk:
            try:
                c.connect()
            except Exception as exc:  # surfaced below
                errors.append(exc)
    threads = [threading.Thread(target=work, args=(clients[i::parallel],))
               for i in range(parallel)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not errors, errors[:3]


@pytest.mark.timeout(900)
def test_500_buyers_on_sale_with_a_web_restart(cluster, clean_db, make_users, app):
    """500 clients wait before the on-sale; random order at the set rate; restart loses no place."""
    rate = 1200  # buyers a minute: 500 take about 25 s, long enough to kill a web mid-queue
    interval = 0.5
    env = {"ADMISSION_INTERVAL_SECONDS": str(interval), "USER_RATE_LIMIT": "50/second",
           "ADMISSION_TTL_SECONDS": str(ADMISSION_TTL)}
    cluster.env.update(env)
    event_id = gated_event(clean_db, _iso(utcnow() + timedelta(days=1)), rate=rate)
    other_event = gated_event(clean_db, _iso(utcnow() - timedelta(days=1)), rate=rate)
    seats = _seat_ids(app, event_id)
    ports = [free_port(), free_port()]
    webs = [_start_web(cluster, ports[0], "web-a"), _start_web(cluster, ports[1], "web-b")]
    cluster.worker(concurrency=2)
    cluster.beat()
    users = make_users(500)
    # Distinct client addresses, as the load balancer (a trusted proxy) would pass them.
    clients = [QueueClient(webs[i % 2].url, tok, uid, event_id, f"10.1.{i // 200}.{i % 200 + 1}")
               for i, (uid, tok) in enumerate(users)]
    r, ns = _ns_redis(cluster)
    try:
        join_order = [c.user_id for c in clients]
        _connect_all(clients)
        wait_until(lambda: all(c.acks for c in clients), 120, "every join answered", interval=0.2)
        for c in clients:
            assert c.acks[0].get("state") == "pre_queue", c.acks[0]
            assert c.acks[0]["position"] is None
        assert r.zcard(f"{ns}:wr:{event_id}:pre") == 500

        # No seat for anyone before the on-sale, whatever they send.
        assert clients[0].hold(seats[0], None)["error"]["details"]["reason"] == "not_admitted"

        _cli(clean_db, "waiting-room", "on-sale", str(event_id), "now")
        wait_until(lambda: len(_admitted(r, ns, event_id)) >= 5, 60, "first admissions",
                   interval=0.2)
        # The room is paused while the checks below run (slowly on a loaded machine),
        # so that buyers are still queued when a web process is killed.
        _cli(clean_db, "waiting-room", "pause", str(event_id))

        # Skipping the queue: a waiting buyer tries a forged token, an expired one,
        # another event's, and someone else's (an admitted buyer's) token.
        admitted_uid = _admitted(r, ns, event_id)[0][0]
        admitted_client = next(c for c in clients if c.user_id == admitted_uid)
        wait_until(lambda: admitted_client.token_now(), 30, "the first admitted gets a token")
        stolen = admitted_client.token_now()
        waiting = [c for c in clients if r.zscore(f"{ns}:wr:{event_id}:q", c.user_id)][-5:]
        assert len(waiting) == 5
        with app.app_context():
            for cheat in waiting:
                for token in (None, "forged." + stolen[7:], stolen,
                              waiting_room.issue_token(cheat.user_id, event_id, time.time() - 5),
                              waiting_room.issue_token(cheat.user_id, other_event,
                                                       time.time() + 600)):
                    ack = cheat.hold(seats[1], token)
                    assert not ack["ok"] and ack["error"]["code"] == "forbidden", ack
                    assert ack["error"]["details"]["reason"] == "not_admitted"
        # The rightful owner of that token may hold.
        assert admitted_client.hold(seats[2], stolen)["ok"] is True

        _cli(clean_db, "waiting-room", "open", str(event_id))

        # Mid-queue: kill -9 one web process and start it again on the same port.
        # Admission goes on while it is down: its buyers learn theirs on re-joining.
        wait_until(lambda: len(_admitted(r, ns, event_id)) >= 150, 120, "150 admitted",
                   interval=0.2)
        _cli(clean_db, "waiting-room", "pause", str(event_id))
        victims = [c for c in clients if c.url == webs[0].url]
        before = {c.user_id: len(c.acks) for c in victims}
        webs[0].kill9()   # the process group, gone before its port is taken again
        assert r.zcard(f"{ns}:wr:{event_id}:q") > 0, "the queue emptied before the kill"
        _cli(clean_db, "waiting-room", "open", str(event_id))
        webs[0] = _start_web(cluster, ports[0], "web-a-restarted")
        wait_until(lambda: len(_admitted(r, ns, event_id)) == 500, 180, "all 500 admitted",
                   interval=0.5)
        wait_until(lambda: all(c.token_now() for c in clients), 120,
                   "every client holding its token", interval=0.5)
        wait_until(lambda: all(len(c.acks) > before[c.user_id] for c in victims), 60,
                   "every client of the killed web re-joined", interval=0.5)
    finally:
        for c in clients:
            c.close()

    log = _admitted(r, ns, event_id)
    uids = [u for u, _t in log]
    # Each exactly once (500 admissions counted, 500 buyers admitted), nobody else.
    assert int(r.get(f"{ns}:wr:{event_id}:seq")) == 500
    assert sorted(uids) == sorted(join_order)
    # Random order: no relation to arrival order (|Spearman rho| is about 0.045 for
    # a random permutation of 500; 0.3 is over six standard deviations away).
    rank_join = {u: i for i, u in enumerate(join_order)}
    rho = _spearman([rank_join[u] for u in uids], list(range(len(uids))))
    assert abs(rho) < 0.3, rho
    # Never faster than the rate: any run of admissions fits the rate plus one burst.
    burst = max(1.0, rate * interval * 2 / 60)
    times = [t for _u, t in log]
    for i in range(len(times)):
        for j in range(i, len(times)):
            assert j - i + 1 <= rate / 60 * (times[j] - times[i]) + burst + 1, (i, j)
    # Tokens: one admission message at most per buyer, and every buyer has its own token.
    with app.app_context():
        for c in clients:
            assert len(c.admitted) <= 1, c.user_id
            waiting_room.check_token(c.token_now(), c.user_id, event_id)
    # Positions: never grew. Updates are ordered by seq (admissions so far); a
    # position is exact for its seq, so the sequence sorted by seq never rises.
    first_positions = []
    for c in clients:
        queued = sorted({(seq, pos) for seq, state, pos in c.seen if state == "queued"})
        assert queued, f"client {c.user_id} never saw a queue position"
        first_positions.append(queued[0][1])
        by_seq = {}
        for seq, pos in queued:
            assert by_seq.setdefault(seq, pos) == pos, (c.user_id, seq)
        positions = [pos for _seq, pos in queued]
        assert positions == sorted(positions, reverse=True), (c.user_id, queued)
    # The draw handed out every place from 1 to 500 once.
    assert sorted(first_positions) == list(range(1, 501))
    # And the restart lost no place: each client of the killed web re-joined at or
    # ahead of where it was (checked above), and was admitted.
    assert {c.user_id for c in victims} <= set(uids)


def _spearman(a, b):
    ra, rb = _ranks(a), _ranks(b)
    ma, mb = statistics.fmean(ra), statistics.fmean(rb)
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb))
    var = (sum((x - ma) ** 2 for x in ra) * sum((y - mb) ** 2 for y in rb)) ** 0.5
    return cov / var


def _ranks(values):
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0] * len(values)
    for rank, i in enumerate(order):
        ranks[i] = rank
    return ranks


def test_waiting_room_page_serves_its_script_to_signed_in_buyers(app, clean_db, client):
    """The page exists for a gated event; anonymous visitors are asked to log in first."""
    event_id = gated_event(clean_db, _iso(utcnow() + timedelta(hours=1)), rate=60)
    page = client.get(f"/events/{event_id}/waiting-room")
    assert page.status_code == 200
    assert b"to take your place in the queue" in page.data
    assert b"waiting_room.js" not in page.data
    assert client.get("/events/999999/waiting-room").status_code == 404
