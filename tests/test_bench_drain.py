"""The load generator's drain: it waits for the answer of every request sent, including
one whose ack has not come yet. Leaving as soon as nothing accepted was unanswered counted
such a request unanswered a moment after it was sent: that is how the benches reported
answers the server had decided and recorded (drills at 02cfdf4; one request in 19,143 of
bench/holds.py at 36ddae0, whose drain was the same)."""
import asyncio
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

import buyers  # noqa: E402


def _run(make_coroutine):
    """asyncio.run in a thread of its own: an earlier test of this process (Playwright's
    sync API) may have left this thread's event loop running."""
    out = {}
    thread = threading.Thread(target=lambda: out.update(result=asyncio.run(make_coroutine())))
    thread.start()
    thread.join(30)
    assert "result" in out, "the coroutine did not finish"
    return out["result"]


def test_the_drain_waits_for_a_request_whose_ack_is_on_its_way():
    request = SimpleNamespace(rid="r1")
    buyer = SimpleNamespace(pending={"r1": request})   # sent; its ack not here yet
    client = SimpleNamespace(inflight={}, buyers=[buyer])

    async def server():
        await asyncio.sleep(0.3)
        client.inflight["r1"] = request                 # the ack: accepted
        await asyncio.sleep(0.3)
        client.inflight.pop("r1")                       # the answer
        buyer.pending.pop("r1")

    async def main():
        answers = asyncio.ensure_future(server())
        started = time.monotonic()
        await buyers.drain(client, seconds=10, poll_s=0.01)
        waited = time.monotonic() - started
        await answers
        return waited

    waited = _run(main)
    assert 0.55 < waited < 5, waited
    assert not client.inflight and not buyer.pending


def test_the_drain_gives_up_at_its_deadline():
    client = SimpleNamespace(inflight={"r1": object()}, buyers=[])
    started = time.monotonic()
    _run(lambda: buyers.drain(client, seconds=0.2, poll_s=0.01))
    assert 0.2 <= time.monotonic() - started < 2
