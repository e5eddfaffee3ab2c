"""Prometheus metrics.

With PROMETHEUS_MULTIPROC_DIR set (the local cluster sets it for every process),
counters from web processes and Celery workers are aggregated and every web
process's /metrics shows the whole machine's totals; without it, the process's own.
"""
import os
import time

from prometheus_client import (CollectorRegistry, Counter, Gauge, Histogram, generate_latest,
                               multiprocess)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

REQUESTS = Counter("boxoffice_requests_total",
                   "Socket requests by event and how the ack answered",
                   ["event", "outcome"])
RESULTS = Counter("boxoffice_results_total",
                  "Results sent to buyers by event and outcome (ok or an error code)",
                  ["event", "outcome"])
LATENCY = Histogram("boxoffice_click_to_result_seconds",
                    "From the web process receiving a request to the worker sending its result",
                    ["event"],
                    buckets=(.005, .01, .025, .05, .1, .15, .25, .5, 1, 2.5, 5, 10))
BATCH_SIZE = Histogram("boxoffice_task_batch_requests", "Requests carried by one worker task",
                       buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500))
SOCKETS = Gauge("boxoffice_connected_sockets", "Sockets connected to this web process",
                multiprocess_mode="livesum")
SEATS_CHANGED = Counter("boxoffice_seats_changed_batches_total",
                        "seats_changed messages emitted by web processes")
SEATS_CHANGED_SEATS = Counter("boxoffice_seats_changed_seats_total",
                              "Seat updates carried by seats_changed messages")
QUEUE_DEPTH = Gauge("boxoffice_queue_depth", "Messages waiting in the Celery queue",
                    multiprocess_mode="max")


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


def exposition(queue_depth=None):
    """The Prometheus text of this process, or of every process when multiprocess."""
    if queue_depth is not None:
        QUEUE_DEPTH.set(queue_depth)
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST
