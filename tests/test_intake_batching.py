"""The web's batching of requests into worker tasks (booking.intake.BatchingDispatcher),
and the signal that makes it batch harder: the workers being behind
(booking.state.shedding.LoadShedding.behind, from the shared ledger's counters)."""
import threading
import time

from flask import Flask
from flask_socketio import SocketIO

from booking.intake import BatchingDispatcher, behind_linger
from booking.state.backends import RedisState
from booking.state.ledger import RequestLedger
from booking.state.shedding import LoadShedding
from tests.conftest import REDIS_URL
from tests.harness import free_port


def _dispatcher(behind_s, busy_s=0.005):
    sio = SocketIO(Flask(__name__), async_mode="threading")
    batches = []
    return BatchingDispatcher(sio, lambda items: batches.append(list(items)), 200,
                              linger_s=busy_s, behind_linger_s=lambda: behind_s), batches


def test_while_behind_even_a_lone_request_waits_for_company():
    dispatcher, batches = _dispatcher(behind_s=2.0)
    barrier = threading.Barrier(5)

    def ask(n):
        barrier.wait()
        time.sleep(0.02 * n)   # one at a time: 0, 20, ... 80 ms apart
        dispatcher.submit({"n": n})
    threads = [threading.Thread(target=ask, args=(n,)) for n in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert [sorted(i["n"] for i in b) for b in batches] == [[0, 1, 2, 3, 4]]


def test_when_not_behind_a_lone_request_goes_at_once():
    """The busy linger is only for more than one request waiting: here it is a whole
    second, and three requests one after the other take far less than three."""
    dispatcher, batches = _dispatcher(behind_s=0.0, busy_s=1.0)
    started = time.monotonic()
    for n in range(3):
        dispatcher.submit({"n": n})
    assert batches == [[{"n": 0}], [{"n": 1}], [{"n": 2}]]
    assert time.monotonic() - started < 2.0


def test_behind_means_most_answers_were_late_on_any_instance(redis_namespace):
    ns = f"{redis_namespace}-behind"   # counters of its own: other tests count answers too
    config = {"SHED_QUEUE_DEPTH": 0, "SHED_MAX_WAIT_SECONDS": 10.0, "SHED_FLOOR_RPS": 120.0}
    writer = RequestLedger(RedisState(REDIS_URL), ns)
    shedding = LoadShedding(RequestLedger(RedisState(REDIS_URL), ns), config)
    assert not shedding.behind()          # nothing answered yet
    writer.finish_many([(1, f"a{i}", "hold_result", {}) for i in range(40)])
    writer.finish_many([(2, f"b{i}", "hold_result", {}) for i in range(60)], late=60, slow=60)
    assert not shedding.behind()          # the figures of a second ago, read once a second
    shedding._cached = (time.monotonic() - 2, shedding._cached[1])
    assert shedding.behind()              # 60 of 100 answers late
    assert shedding.bound() == 1200       # 100 answers in 10 s: under the floor's 120/s


def test_with_redis_unavailable_the_batch_goes_at_once():
    """The pace cannot be read: no linger, and nothing raised in the dispatcher's loop
    (its requests would wait for ever); their publish then fails busy."""
    config = {"SHED_QUEUE_DEPTH": 0, "SHED_MAX_WAIT_SECONDS": 10.0, "SHED_FLOOR_RPS": 120.0}
    nobody = RedisState(f"redis://127.0.0.1:{free_port()}/0")   # a port nothing listens on
    shedding = LoadShedding(RequestLedger(nobody, "nowhere"), config)
    assert behind_linger(shedding, 0.05) == 0.0
