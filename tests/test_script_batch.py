"""booking.state.script_batch: concurrent calls of one Lua script share a round trip, each
gets its own reply or error, and nobody waits forever. Against the real Redis, with
green threads in a monkey-patched process as in a web process."""
import json
import subprocess
import sys
import uuid

from tests.conftest import REDIS_URL
from tests.harness import ROOT

# Each caller increments its own counter key and the shared one, and gets back its
# argument and the shared count it saw; "fail" makes the script raise for that caller.
SCRIPT = """-- {tag}
if ARGV[1] == 'fail' then return redis.error_reply('refused ' .. ARGV[1]) end
redis.call('INCR', KEYS[1])
return {{ARGV[1], redis.call('INCR', KEYS[2])}}
"""

PROBE = """
import eventlet
eventlet.monkey_patch()
import json, sys
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from booking.state.script_batch import ScriptBatch

url, source, prefix, n, fail_at = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
client = redis.Redis.from_url(url, socket_connect_timeout=1, retry=Retry(NoBackoff(), 0))
batch = ScriptBatch(client, source)
results = [None] * n

def call(i):
    arg = "fail" if i == fail_at else f"a{i}"
    try:
        reply = batch(keys=[f"{prefix}:own:{i}", f"{prefix}:shared"], args=[arg])
        results[i] = ["ok", reply[0].decode(), int(reply[1])]
    except Exception as exc:
        results[i] = ["error", type(exc).__name__, str(exc)]

pool = eventlet.GreenPool()
for i in range(n):
    pool.spawn(call, i)
pool.waitall()
print(json.dumps({"sent": batch.sent, "results": results}))
"""


def _probe(url, n, fail_at=-1, source=None):
    prefix = f"test-script-batch-{uuid.uuid4().hex}"
    source = source or SCRIPT.format(tag=uuid.uuid4().hex)  # never loaded before
    out = subprocess.run([sys.executable, "-c", PROBE, url, source, prefix, str(n),
                          str(fail_at)], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return prefix, json.loads(out.stdout.strip().splitlines()[-1])


def test_twenty_concurrent_calls_are_one_round_trip_each_with_its_own_reply():
    prefix, got = _probe(REDIS_URL, 20)
    # The script was new to Redis: the first pipeline met NOSCRIPT, loaded it and sent
    # again. Without batching it would be 20 round trips (21 with the load).
    assert got["sent"] == 2, got
    assert [r[:2] for r in got["results"]] == [["ok", f"a{i}"] for i in range(20)]
    # Run in arrival order, one after another, as separate calls would be.
    assert [r[2] for r in got["results"]] == list(range(1, 21))


def test_an_error_is_its_callers_alone():
    _prefix, got = _probe(REDIS_URL, 5, fail_at=2)
    assert got["results"][2][0] == "error" and "refused fail" in got["results"][2][2], got
    assert [r[:2] for i, r in enumerate(got["results"]) if i != 2] == \
        [["ok", "a0"], ["ok", "a1"], ["ok", "a3"], ["ok", "a4"]]
    assert [r[2] for i, r in enumerate(got["results"]) if i != 2] == [1, 2, 3, 4]


def test_redis_unreachable_fails_every_caller_and_nobody_hangs():
    import socket
    with socket.socket() as s:     # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    _prefix, got = _probe(f"redis://127.0.0.1:{port}/0", 8)
    assert [r[0] for r in got["results"]] == ["error"] * 8, got
    assert {r[1] for r in got["results"]} == {"ConnectionError"}, got
