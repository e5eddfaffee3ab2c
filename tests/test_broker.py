"""The broker transport (booking/broker.py) against a real redis-server that goes away
while a message is held unacknowledged: closing the channel must fail as a connection
error (which Celery recovers from by reconnecting), never as the AttributeError that
made a worker exit with "Unrecoverable error" (kombu 5.7's Redis transport)."""
import pytest
from kombu import Connection
from kombu.common import ignore_errors
from kombu.transport import redis as kombu_redis

from booking import broker
from tests.test_outages import PrivateRedis


def _held_then_gone(tmp_path, transport):
    """A channel holding one unacknowledged message, its Redis killed, its transport
    detached as Celery's consumer leaves it (Connection.collect) before closing."""
    private = PrivateRedis(tmp_path)
    try:
        with Connection(private.url) as producer:
            producer.SimpleQueue("q").put({"n": 1})
        conn = Connection(private.url, transport=transport)
        channel = conn.channel()
        assert channel.basic_get("q", no_ack=False) is not None
        assert len(channel.qos._delivered) == 1
    finally:
        private.stop()
    conn.transport.client = None
    return conn, channel


def test_kombus_own_transport_fails_so(tmp_path):
    """The failure this module exists for (if kombu fixes it, this test says so)."""
    conn, channel = _held_then_gone(tmp_path, "redis")
    assert isinstance(conn.transport, kombu_redis.Transport)
    with pytest.raises(AttributeError):
        ignore_errors(conn, channel.close)


def test_closing_after_redis_went_away_is_a_connection_error(tmp_path):
    conn, channel = _held_then_gone(tmp_path, broker.TRANSPORT)
    assert isinstance(conn.transport, broker.Transport)
    ignore_errors(conn, channel.close)   # the connection error is swallowed, as Celery does
    assert channel.closed
