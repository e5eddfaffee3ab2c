"""Driving many real socket clients at once, and checking the database afterwards."""
import random
import threading
import uuid

import sqlalchemy as sa

from tests.harness import Buyer, wait_until


def connect_buyers(users, urls, base_url=None):
    """One connected Buyer per (id, token), spread round-robin over urls."""
    out = []
    for i, (uid, token) in enumerate(users):
        url = urls[i % len(urls)]
        out.append(Buyer(base_url or url, token, uid).connect(url))
    return out


class Tracker:
    """Accepted requests and their results, across every client."""

    def __init__(self):
        self.lock = threading.Lock()
        self.accepted = {}   # request_id -> (buyer, kind, payload)
        self.rejected = {}   # request_id -> ack

    def send(self, buyer, kind, payload):
        rid = uuid.uuid4().hex
        payload = dict(payload, request_id=rid)
        # The recovery rule (docs/API.md): re-sent until its result comes.
        ack = buyer.request(kind, payload, timeout=60)
        assert ack is not None, f"no ack in 60 s for {kind} {rid}"
        with self.lock:
            if ack.get("ok"):
                self.accepted[rid] = (buyer, kind, payload)
            else:
                self.rejected[rid] = ack
        return rid, ack

    @staticmethod
    def result_event(kind):
        return {"hold": "hold_result", "release": "release_result",
                "pay": "payment_result"}[kind]

    def results(self):
        """{request_id: [result, ...]} for every accepted request (empty list: none yet)."""
        out = {rid: [] for rid in self.accepted}
        for rid, (buyer, kind, _p) in self.accepted.items():
            out[rid] = [r for r in buyer.results(self.result_event(kind))
                        if r.get("request_id") == rid]
        return out

    def answers(self):
        """{request_id: its result}, every accepted request answered.

        A request its client sent again (the recovery rule: no result within
        RESEND_AFTER_S, which a loaded machine can take) is answered again from its
        record: the same result, at most once per send. Two different results, or
        more results than sends, fail."""
        out = {}
        for rid, results in self.results().items():
            buyer = self.accepted[rid][0]
            assert results, f"{rid} unanswered"
            assert all(r == results[0] for r in results), (rid, results)
            assert len(results) <= buyer.sent.get(rid, 0), (rid, results, buyer.sent.get(rid))
            out[rid] = results[0]
        return out

    def wait_all_answered(self, timeout, db_url=None):
        try:
            wait_until(lambda: all(self.results().values()), timeout,
                       "a result for every accepted request", interval=0.2)
        except AssertionError:
            missing = [rid for rid, r in self.results().items() if not r]
            raise AssertionError(f"{len(missing)} accepted requests unanswered: "
                                 f"{self.diagnose(missing, db_url)}") from None

    def diagnose(self, rids, db_url):
        """Where each unanswered request got to: recorded by a worker or not."""
        if not db_url:
            return rids
        engine = sa.create_engine(db_url)
        with engine.connect() as conn:
            found = {r.request_id: r.result for r in conn.execute(sa.text(
                "SELECT request_id, result FROM request_records WHERE request_id IN :ids")
                .bindparams(sa.bindparam("ids", expanding=True)), {"ids": list(rids)})}
        engine.dispose()
        return {rid: found.get(rid, "NOT RECORDED") for rid in rids}


def random_seats(rng, seat_ids, max_n=4, multi_share=0.4):
    n = rng.randint(2, max_n) if rng.random() < multi_share else 1
    return sorted(rng.sample(seat_ids, n))


def run_parallel(fns):
    """Run callables in threads started together; re-raise the first failure."""
    errors = []
    barrier = threading.Barrier(len(fns))

    def wrap(fn):
        try:
            barrier.wait()
            fn()
        except Exception as e:  # surfaced below
            errors.append(e)
    threads = [threading.Thread(target=wrap, args=(fn,)) for fn in fns]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    if errors:
        raise errors[0]


def db_state(url, event_id):
    """Seats {id: (status, version, hold_id)} and holds {id: (user_id, status, [seat ids])}."""
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        seats = {r.id: (r.status, r.version, r.hold_id) for r in conn.execute(sa.text(
            "SELECT id, status, version, hold_id FROM seats WHERE event_id = :e"), {"e": event_id})}
        holds = {}
        for r in conn.execute(sa.text(
                "SELECT h.id, h.user_id, h.status, hs.seat_id FROM holds h "
                "JOIN hold_seats hs ON hs.hold_id = h.id WHERE h.event_id = :e ORDER BY hs.seat_id"),
                {"e": event_id}):
            holds.setdefault(r.id, (r.user_id, r.status, []))[2].append(r.seat_id)
        records = conn.execute(sa.text(
            "SELECT user_id, request_id, COUNT(*) AS n FROM request_records "
            "GROUP BY user_id, request_id HAVING COUNT(*) > 1")).all()
    engine.dispose()
    return seats, holds, records


def assert_consistent(seats, holds):
    """Every held seat belongs to exactly one open hold that lists it, and vice versa."""
    held_by = {}
    for hid, (_uid, status, seat_ids) in holds.items():
        if status == "held":
            for s in seat_ids:
                assert s not in held_by, f"seat {s} in open holds {held_by[s]} and {hid}"
                held_by[s] = hid
    for sid, (status, _v, hold_id) in seats.items():
        if status == "held":
            assert hold_id is not None and holds[hold_id][1] in ("held", "paying", "expired"), sid
        if sid in held_by and status == "held":
            assert hold_id == held_by[sid], (sid, hold_id, held_by[sid])
    return held_by


def rng_for(test_name):
    seed = random.randrange(2**32)
    print(f"{test_name}: random seed {seed}")
    return random.Random(seed)
