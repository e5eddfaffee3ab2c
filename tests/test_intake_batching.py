"""The web's batching of requests into worker tasks (booking.intake.BatchingDispatcher):
at most one task message per interval, a request after a quiet interval at once."""
import threading
import time

import pytest
from flask import Flask
from flask_socketio import SocketIO

from booking.errors import Busy
from booking.intake import BatchingDispatcher


def _dispatcher(interval_s, batch_max=200, fail=False):
    sio = SocketIO(Flask(__name__), async_mode="threading")
    batches = []

    def send(items):
        if fail:
            raise ConnectionError("the broker is gone")
        batches.append((time.monotonic(), [i["n"] for i in items]))
    return BatchingDispatcher(sio, send, batch_max, interval_s), batches


def _ask_together(dispatcher, ns, spacing_s=0.0):
    """Submit one request per n from its own thread, spacing_s apart; wait for all."""
    errors = []

    def ask(n, delay):
        time.sleep(delay)
        try:
            dispatcher.submit({"n": n})
        except Busy as err:
            errors.append(err)
    threads = [threading.Thread(target=ask, args=(n, spacing_s * k)) for k, n in enumerate(ns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    return errors


def test_a_request_after_a_quiet_interval_goes_at_once():
    """The interval is a whole second here; three requests a second and more apart
    each go alone, at once."""
    dispatcher, batches = _dispatcher(interval_s=1.0)
    for n in range(3):
        started = time.monotonic()
        dispatcher.submit({"n": n})
        assert time.monotonic() - started < 0.9     # not the interval's 1 s
        time.sleep(1.05)
    assert [b for _, b in batches] == [[0], [1], [2]]


def test_requests_within_the_interval_wait_for_its_end_and_go_together():
    dispatcher, batches = _dispatcher(interval_s=1.0)
    dispatcher.submit({"n": 0})                  # at once: nothing was sent before
    _ask_together(dispatcher, [1, 2, 3, 4], spacing_s=0.05)
    assert [b for _, b in batches] == [[0], [1, 2, 3, 4]]
    assert batches[1][0] - batches[0][0] >= 1.0 - 0.05


def test_under_steady_load_the_messages_a_second_are_bounded():
    """200 requests spread over a second from 200 threads: 5 messages at most per
    second at an interval of 0.25 s (and the first), every request in one of them."""
    dispatcher, batches = _dispatcher(interval_s=0.25)
    started = time.monotonic()
    assert _ask_together(dispatcher, list(range(200)), spacing_s=0.005) == []
    took = time.monotonic() - started
    assert sorted(n for _, b in batches for n in b) == list(range(200))
    assert len(batches) <= took / 0.25 + 2, (len(batches), took)
    gaps = [b - a for (a, _), (b, _) in zip(batches, batches[1:])]
    assert min(gaps) >= 0.25 * 0.8, gaps   # a thread switch may fall between two stamps


def test_a_full_batch_does_not_wait_for_the_interval():
    dispatcher, batches = _dispatcher(interval_s=5.0, batch_max=3)
    dispatcher.submit({"n": 0})
    started = time.monotonic()
    _ask_together(dispatcher, [1, 2, 3])
    assert time.monotonic() - started < 2.0
    assert [sorted(b) for _, b in batches] == [[0], [1, 2, 3]]


@pytest.mark.parametrize("interval_s", [0.0, 0.2])
def test_a_failed_publish_answers_each_of_its_requests_busy(interval_s):
    """The broker refuses: every request of the batch gets Busy (never waits for ever),
    and the dispatcher goes on with the next ones."""
    dispatcher, batches = _dispatcher(interval_s=interval_s, fail=True)
    errors = _ask_together(dispatcher, list(range(5)), spacing_s=0.01)
    assert len(errors) == 5 and all(e.details == {"retry_after_s": 2} for e in errors)
    with pytest.raises(Busy):
        dispatcher.submit({"n": 5})


def test_the_interval_grows_with_the_request_rate_up_to_its_full_length():
    """A lightly loaded process waits less: the interval is in proportion to its requests
    a second, full from full_rate up. On a clock the test moves: 10, 100, 400 a second."""
    sio = SocketIO(Flask(__name__), async_mode="threading")
    now = [1000.0]
    dispatcher = BatchingDispatcher(sio, lambda items: None, 200, interval_s=0.1,
                                    full_rate=200, clock=lambda: now[0])
    assert dispatcher.interval() == 0.0                     # nothing asked yet
    for per_second in (10, 100, 400):
        for _ in range(per_second * 5):                     # five seconds of it
            now[0] += 1 / per_second
            dispatcher.count_request(now[0])
        rate = dispatcher.rate()
        assert abs(rate - per_second) <= per_second * 0.05, (per_second, rate)
        expected = 0.1 * min(1.0, per_second / 200)
        assert abs(dispatcher.interval() - expected) <= expected * 0.05 + 1e-9
    now[0] += 3.0                                            # quiet for three seconds
    assert dispatcher.interval() < 0.1 * 400 / 200 * 0.06
