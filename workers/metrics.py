"""Prometheus hooks of a Celery worker, loaded with `celery -A workers worker -I workers.metrics`.

- Every prefork child writes its own files under PROMETHEUS_MULTIPROC_DIR; when
  a child exits (recycled, or at shutdown) its live gauges are dropped. Its
  counters stay: they are part of the totals.
- With WORKER_METRICS_PORT set (containers, where a worker does not share a
  PROMETHEUS_MULTIPROC_DIR with the web processes), the worker's main process
  serves the sum over itself and its children on that port at /metrics.
"""
import logging
import os

from celery import signals

log = logging.getLogger(__name__)


@signals.worker_process_shutdown.connect
def _child_exited(pid=None, exitcode=None, **_):
    """A prefork child is going away: drop its live gauges."""
    from booking.metrics import process_exited
    process_exited(pid or os.getpid())


@signals.worker_ready.connect
def _serve_metrics(**_):
    """Serve /metrics from the worker's main process when WORKER_METRICS_PORT is set."""
    from booking.config import worker_metrics_address
    port, address = worker_metrics_address()
    if port is None:
        return
    from prometheus_client import start_http_server

    from booking.metrics import multiprocess_dir, registry
    if not multiprocess_dir():
        log.warning("PROMETHEUS_MULTIPROC_DIR is unset: worker metrics show the main "
                    "process only, not its prefork children")
    start_http_server(port, addr=address, registry=registry())
    log.info("worker metrics on port %s", port)
