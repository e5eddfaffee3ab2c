"""The Celery broker's Redis transport, with one failure of kombu's made recoverable.

When Redis goes away while a worker holds a message it could not acknowledge (Redis
restarted between the end of a task and its ack), Celery's consumer first collects
the broken connection (kombu detaches the transport from it) and then closes it. The
close restores the unacknowledged message, which builds a Redis client from the
detached transport: kombu 5.7 raises AttributeError ('NoneType' object has no
attribute 'hostname'), which Celery does not expect there, and the worker exits with
"Unrecoverable error" instead of reconnecting (seen in tests/test_answers.py's Redis
restart). Here that case raises redis's ConnectionError, which Celery treats as the
connection loss it is: the worker reconnects. The message is not lost: its copy in
Redis's unacked index comes back after the visibility timeout, and with a Redis that
restarted empty the client's re-send covers it (docs/DESIGN.md).
"""
from kombu.transport import redis as kombu_redis
from redis.exceptions import ConnectionError as RedisConnectionError


class Channel(kombu_redis.Channel):
    def _connparams(self, asynchronous=False):
        if self.connection.client is None:
            raise RedisConnectionError("the broker connection was already closed")
        return super()._connparams(asynchronous=asynchronous)


class Transport(kombu_redis.Transport):
    Channel = Channel


# Celery's broker_transport setting names it; the URL stays redis:// (or rediss://).
TRANSPORT = f"{__name__}:Transport"
