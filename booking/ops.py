"""Operations endpoints: liveness, readiness, metrics."""
import logging
import os

import sqlalchemy as sa
from flask import Blueprint, Response, current_app, jsonify, request

from .extensions import db, socketio
from .metrics import exposition
from .runtime import runtime

log = logging.getLogger(__name__)
bp = Blueprint("ops", __name__)


@bp.get("/healthz")
def healthz():
    """200 while the process runs."""
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz():
    """200 when the database and Redis answer; 503 otherwise and while draining."""
    rt = runtime()
    checks = {}
    try:
        db.session.execute(sa.text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as err:
        log.warning("readiness: database: %s", err)
        checks["database"] = "down"
    if current_app.config["REDIS_URL"]:
        try:
            rt.state.ping()
            checks["redis"] = "ok"
        except Exception as err:
            log.warning("readiness: redis: %s", err)
            checks["redis"] = "down"
    draining = rt.draining
    ready = not draining and all(v == "ok" for v in checks.values())
    body = {"status": "ready" if ready else ("draining" if draining else "unavailable"),
            "checks": checks,
            # This process only: lets an operator (and the cluster tests) see
            # how sockets spread over the instances behind the load balancer.
            "instance": {"pid": os.getpid(), "sockets": _local_sockets()}}
    return jsonify(body), 200 if ready else 503


def _local_sockets():
    server = getattr(socketio, "server", None)
    eio = getattr(server, "eio", None)
    return len(getattr(eio, "sockets", {}) or {})


@bp.get("/metrics")
def metrics():
    """Prometheus text format."""
    read_depth = None
    if current_app.config["REDIS_URL"]:
        redis_client = runtime().state.redis
        queue = current_app.config["CELERY_QUEUE"]

        def read_depth():
            try:
                return queue, redis_client.llen(queue)
            except Exception:
                log.warning("metrics: queue depth unavailable")
                return None
    body, content_type = exposition(read_depth, request.headers.get("Accept"))
    return Response(body, content_type=content_type)
