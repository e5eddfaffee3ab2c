"""Prometheus metrics: the Metrics methods, multiprocess sums, the worker's own endpoint.

Anything multiprocess runs in child processes: prometheus_client chooses its
storage when first imported, and this test process imported it in plain mode.
"""
import os
import subprocess
import textwrap
import uuid

import requests
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from booking.metrics import Metrics
from tests.conftest import create_event
from tests.harness import PYTHON, ROOT, free_port, wait_until


def parse(text):
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(name, **labels):
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_metrics_methods_move_the_counters():
    m = Metrics()
    before = (value("boxoffice_requests_total", event="hold", outcome="accepted"),
              value("boxoffice_results_total", event="payment_result", outcome="payment_declined"),
              value("boxoffice_click_to_result_seconds_count", event="hold_result"),
              value("boxoffice_task_batch_requests_count"),
              value("boxoffice_seats_changed_seats_total"))
    m.request("hold", "accepted")
    m.results([(1, "r1", "hold_result", {"ok": True}),
               (2, "r2", "payment_result", {"ok": False, "error": {"code": "payment_declined"}})],
              received_at={(1, "r1"): 1.0})
    m.batch(2)
    m.seats_changed(7, 3)
    after = (value("boxoffice_requests_total", event="hold", outcome="accepted"),
             value("boxoffice_results_total", event="payment_result", outcome="payment_declined"),
             value("boxoffice_click_to_result_seconds_count", event="hold_result"),
             value("boxoffice_task_batch_requests_count"),
             value("boxoffice_seats_changed_seats_total"))
    assert [a - b for a, b in zip(after, before)] == [1, 1, 1, 1, 3]


def test_metrics_endpoint_answers_prometheus_text(client):
    client.get("/healthz")
    r = client.get("/metrics")
    assert r.status_code == 200
    assert r.content_type.startswith("text/plain; version=0.0.4")
    names = {f.name for f in text_string_to_metric_families(r.get_data(as_text=True))}
    assert {"boxoffice_requests", "boxoffice_results", "boxoffice_click_to_result_seconds",
            "boxoffice_connected_sockets", "boxoffice_seats_changed_batches",
            "boxoffice_seats_changed_recipients"} <= names
    # The embedded mode has no queue: no queue depth sample.
    assert "boxoffice_queue_depth" not in names


WRITER = textwrap.dedent("""
    import sys
    from booking.metrics import SOCKETS, Metrics
    m = Metrics()
    for _ in range(int(sys.argv[1])):
        m.request("hold", "accepted")
    m.results([(1, "x", "hold_result", {"ok": False, "error": {"code": "seat_unavailable"}})])
    SOCKETS.inc(int(sys.argv[2]))
    print(__import__("os").getpid())
""")

READER = textwrap.dedent("""
    import sys
    from booking.metrics import exposition, process_exited
    for pid in sys.argv[1:]:
        process_exited(int(pid))
    sys.stdout.write(exposition(lambda: ("q", 5))[0].decode())
""")


def test_multiprocess_sums_every_process_and_drops_dead_gauges(tmp_path):
    env = dict(os.environ, PROMETHEUS_MULTIPROC_DIR=str(tmp_path))
    pids = []
    for requests_n, sockets in ((3, 2), (4, 5), (5, 1)):
        out = subprocess.run([PYTHON, "-c", WRITER, str(requests_n), str(sockets)], cwd=ROOT,
                             env=env, capture_output=True, text=True, timeout=60, check=True)
        pids.append(out.stdout.strip())

    def read(*dead):
        out = subprocess.run([PYTHON, "-c", READER, *dead], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=60, check=True)
        return parse(out.stdout)

    # The writers have exited but were not marked dead: their gauges still count.
    all_in = read()
    assert all_in[("boxoffice_requests_total", (("event", "hold"), ("outcome", "accepted")))] == 12
    assert all_in[("boxoffice_results_total",
                   (("event", "hold_result"), ("outcome", "seat_unavailable")))] == 3
    assert all_in[("boxoffice_connected_sockets", ())] == 8
    assert all_in[("boxoffice_queue_depth", (("queue", "q"),))] == 5
    # Once a process is known dead its sockets leave the gauge; its counts stay in the totals.
    one_dead = read(pids[1])
    assert one_dead[("boxoffice_connected_sockets", ())] == 3
    assert one_dead[("boxoffice_requests_total", (("event", "hold"), ("outcome", "accepted")))] == 12


def test_worker_serves_its_metrics_with_prefork_children(cluster, clean_db, buyers, tmp_path):
    """WORKER_METRICS_PORT (containers): the worker sums itself and its prefork children."""
    event_id = create_event(clean_db, rows=1, per_row=4)
    prom = tmp_path / "worker-prom"
    prom.mkdir()
    port = free_port()
    name = f"worker-{uuid.uuid4().hex[:6]}"
    worker = cluster._start(name, [
        PYTHON, "-m", "celery", "-A", "workers", "worker", "--pool", "prefork",
        "--concurrency", "2", "--hostname", f"{name}@%h", "--loglevel", "INFO",
        "--without-gossip", "--without-mingle", "-I", "workers.metrics"],
        {"PROMETHEUS_MULTIPROC_DIR": str(prom), "WORKER_METRICS_PORT": str(port),
         "WORKER_METRICS_ADDR": "127.0.0.1"})
    wait_until(lambda: worker.log_contains("ready."), 60,
               "worker ready", worker)
    web = cluster.web()
    buyer = buyers(web.url)
    seats = [s["id"] for s in buyer.join(event_id)["seats"]][:2]
    rid = uuid.uuid4().hex
    assert buyer.call("hold", {"request_id": rid, "event_id": event_id, "seat_ids": seats})["ok"]
    assert buyer.result_for("hold_result", rid)["ok"]

    def scraped():
        try:
            return parse(requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text)
        except requests.RequestException:
            return {}
    wait_until(lambda: scraped().get(("boxoffice_results_total",
                                      (("event", "hold_result"), ("outcome", "ok")))) == 1,
               30, "the worker's result counted", worker)
    samples = scraped()
    assert samples[("boxoffice_task_batch_requests_count", ())] >= 1
    assert samples[("boxoffice_click_to_result_seconds_count", (("event", "hold_result"),))] == 1
    # The task ran in a prefork child, not in the process that serves /metrics.
    assert any(p.name.startswith("counter_") and p.name != f"counter_{worker.pid}.db"
               for p in prom.iterdir())
