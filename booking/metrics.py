"""Prometheus metrics.

With PROMETHEUS_MULTIPROC_DIR set (the local cluster sets it for every process
it starts, a fresh folder per cluster), every process writes its samples to
files there, and every web process's /metrics shows the sum over all the
processes of the machine: web processes, Celery workers and their prefork
children. Without it, /metrics shows the process's own samples.

The variable must be set before this module is first imported (prometheus_client
picks its storage at import time). docs/OPERATIONS.md says what each metric means
and which to alert on.
"""
import logging
import os
import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, multiprocess
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import choose_encoder

from .config import prometheus_multiprocess_dir

log = logging.getLogger(__name__)

REQUESTS = Counter("boxoffice_requests_total",
                   "Socket requests by event and how the ack answered: accepted, repeat, "
                   "or the error code of a rejection",
                   ["event", "outcome"])
RESULTS = Counter("boxoffice_results_total",
                  "Results sent to buyers by result event (hold_result, release_result, "
                  "payment_result) and outcome (ok or an error code)",
                  ["event", "outcome"])
LATENCY = Histogram("boxoffice_click_to_result_seconds",
                    "From the web process receiving a request to the worker sending its result",
                    ["event"],
                    buckets=(.005, .01, .025, .05, .1, .15, .25, .5, 1, 2.5, 5, 10, 30))
BATCH_SIZE = Histogram("boxoffice_task_batch_requests", "Requests carried by one worker task",
                       buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500))
# livesum: the sum over live processes only; a web process that exits (or that
# the cluster finds dead) is dropped with mark_process_dead().
SOCKETS = Gauge("boxoffice_connected_sockets", "Sockets connected to the web processes",
                multiprocess_mode="livesum")
SEATS_CHANGED = Counter("boxoffice_seats_changed_batches_total",
                        "seats_changed messages emitted by web processes (one per event "
                        "per interval on each web process)")
SEATS_CHANGED_SEATS = Counter("boxoffice_seats_changed_seats_total",
                              "Seat updates carried by seats_changed messages")
SEATS_CHANGED_RECIPIENTS = Counter("boxoffice_seats_changed_recipients_total",
                                   "Sockets that seats_changed messages were sent to "
                                   "(one message to 100 watchers counts 100)")
DRAINS = Counter("boxoffice_web_drains_total", "Web processes that started draining (SIGTERM)")
RESEND_NOTICES = Counter("boxoffice_resend_notices_total",
                        "Times a web process told its sockets to re-send unanswered requests "
                        "(its message-queue subscription came back after a loss)", ["reason"])
CONNECTS_REFUSED = Counter("boxoffice_socket_connects_refused_total",
                           "New Socket.IO sessions refused by a web process, by reason",
                           ["reason"])
# Readings of shared state (Redis) taken at scrape time, by name: () -> value.
# create_app fills it in; see ScrapeCollector for each one's shape.
SCRAPE_SOURCES = {}


class Metrics:
    """The counters the transport and task layers move."""

    def request(self, event, outcome):
        REQUESTS.labels(event, outcome).inc()

    def results(self, outcomes, received_at=None):
        now = time.time()
        for _uid, _rid, event, payload in outcomes:
            code = "ok" if payload.get("ok") else payload["error"]["code"]
            RESULTS.labels(event, code).inc()
        if received_at:
            for (uid, rid, event, _p) in outcomes:
                started = received_at.get((uid, rid))
                if started:
                    LATENCY.labels(event).observe(max(0.0, now - started))

    def batch(self, size):
        BATCH_SIZE.observe(size)

    def seats_changed(self, event_id, seat_count):
        SEATS_CHANGED.inc()
        SEATS_CHANGED_SEATS.inc(seat_count)
        recipients = _room_size(f"event:{event_id}")
        if recipients:
            SEATS_CHANGED_RECIPIENTS.inc(recipients)


def _room_size(room):
    """Sockets of this process in a room (the coalescer emits to local sockets only)."""
    from .extensions import socketio
    server = getattr(socketio, "server", None)
    if server is None:
        return 0
    try:
        return len(server.manager.rooms.get("/", {}).get(room, ()))
    except Exception:
        log.debug("room size unavailable", exc_info=True)
        return 0


class QueueDepthCollector:
    """boxoffice_queue_depth, read from Redis at scrape time.

    The depth is a fact of the broker, not of a process, so it is not kept in
    multiprocess files (where a dead process's last reading would linger).
    """

    def __init__(self, read_depth):
        self.read_depth = read_depth

    def collect(self):
        family = GaugeMetricFamily("boxoffice_queue_depth",
                                   "Messages waiting in the Celery queue (a Redis list), "
                                   "not counting those a worker has taken",
                                   labels=["queue"])
        depth = self.read_depth()
        if depth is not None:
            family.add_metric([depth[0]], depth[1])
        yield family


class ScrapeCollector:
    """Waiting rooms and load shedding, read from Redis at scrape time (facts of Redis, not of a process)."""

    def collect(self):
        rooms = _read("waiting_rooms") or {}
        size = GaugeMetricFamily("boxoffice_waiting_room_buyers",
                                 "Buyers in an event's waiting room by state: pre_queue (before "
                                 "the on-sale draw), queued, admitted (token still valid)",
                                 labels=["event_id", "state"])
        rate = GaugeMetricFamily("boxoffice_waiting_room_admission_rate_per_minute",
                                 "The admission rate in use (set by ops, or derived)",
                                 labels=["event_id"])
        total = CounterMetricFamily("boxoffice_waiting_room_admitted",
                                    "Buyers admitted from an event's waiting room so far",
                                    labels=["event_id"])
        for event_id, stats in rooms.items():
            e = str(event_id)
            size.add_metric([e, "pre_queue"], stats["pre_queue"])
            size.add_metric([e, "queued"], stats["queued"])
            size.add_metric([e, "admitted"], stats["admitted_active"])
            if stats.get("rate") is not None:
                rate.add_metric([e], stats["rate"])
            total.add_metric([e], stats["admitted_total"])
        yield from (size, rate, total)
        shed = _read("shedding")
        if shed is not None:
            depth, bound, late, _slow = shed
            yield GaugeMetricFamily("boxoffice_requests_in_flight",
                                    "Requests accepted and not answered yet, every instance "
                                    "(the depth load shedding compares with its bound)",
                                    value=depth)
            yield GaugeMetricFamily("boxoffice_shed_bound_requests",
                                    "Requests in flight beyond which new holds are acked busy",
                                    value=bound)
            yield GaugeMetricFamily("boxoffice_hold_answers_late_ratio",
                                    "Share of hold answers of the last 5 s later than "
                                    "LATENCY_TARGET_MS after their click (every instance)",
                                    value=late)


def _read(name):
    source = SCRAPE_SOURCES.get(name)
    if source is None:
        return None
    try:
        return source()
    except Exception:
        log.warning("metrics: %s unavailable", name, exc_info=True)
        return None


def multiprocess_dir():
    return prometheus_multiprocess_dir()


def registry(read_depth=None):
    """A registry with every process's samples (multiprocess) or this process's own."""
    if multiprocess_dir():
        reg = CollectorRegistry()
        multiprocess.MultiProcessCollector(reg)
    else:
        from prometheus_client import REGISTRY
        reg = CollectorRegistry()
        reg.register(_Delegate(REGISTRY))
    if read_depth is not None:
        reg.register(QueueDepthCollector(read_depth))
    if SCRAPE_SOURCES:
        reg.register(ScrapeCollector())
    return reg


class _Delegate:
    """Exposes the default registry's metrics through another registry."""

    def __init__(self, source):
        self.source = source

    def collect(self):
        return self.source.collect()


def exposition(read_depth=None, accept=None):
    """(body, content type) for a scrape: this process's samples, or every process's.

    read_depth: () -> (queue name, depth) or None, called once per scrape.
    accept: the scraper's Accept header; without one, the classic text format
    (version 0.0.4), which every Prometheus version reads.
    """
    encoder, content_type = choose_encoder(accept)
    return encoder(registry(read_depth)), content_type


def process_exited(pid=None):
    """Drop a process's live gauges (its counters stay in the totals)."""
    if multiprocess_dir():
        multiprocess.mark_process_dead(pid or os.getpid())
