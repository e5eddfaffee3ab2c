"""Configuration read from the environment (see the README's configuration table)."""
import os
import secrets
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
INSTANCE_DIR = PROJECT_ROOT / "instance"


def _int(name, default):
    value = os.environ.get(name)
    return default if value in (None, "") else int(value)


def _float(name, default):
    value = os.environ.get(name)
    return default if value in (None, "") else float(value)


def _bool(name, default):
    value = os.environ.get(name, "").strip().lower()
    if value in ("", None):
        return default
    if value not in ("1", "true", "yes", "0", "false", "no"):
        raise ValueError(f"{name} must be true or false, not {value!r}")
    return value in ("1", "true", "yes")


def _secret_key():
    """The signing key: SECRET_KEY, else a random per-install key kept in instance/."""
    if os.environ.get("SECRET_KEY"):
        return os.environ["SECRET_KEY"]
    INSTANCE_DIR.mkdir(exist_ok=True)
    path = INSTANCE_DIR / "secret_key"
    try:
        # O_EXCL: two processes starting at once must agree on one key.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32))
    return path.read_text().strip()


def prometheus_multiprocess_dir():
    """PROMETHEUS_MULTIPROC_DIR, or None. prometheus_client reads it itself, at import."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def worker_metrics_address():
    """(port, address) a worker serves /metrics on, from WORKER_METRICS_PORT and
    WORKER_METRICS_ADDR (default all interfaces); port None: it serves none."""
    port = os.environ.get("WORKER_METRICS_PORT")
    return (int(port) if port else None), os.environ.get("WORKER_METRICS_ADDR", "0.0.0.0")


def _ticket_signing_keys():
    """Ticket signing keys (base64url Ed25519 seeds), the signing one first.

    TICKET_SIGNING_KEY holds one or more, comma-separated; unset, they are kept
    in instance/ticket_signing_key, one a line, made on first use (see
    `flask booking ticket-key rotate`). Keys after the first only verify: old
    tickets stay valid after a rotation.
    """
    if os.environ.get("TICKET_SIGNING_KEY"):
        return [k.strip() for k in os.environ["TICKET_SIGNING_KEY"].split(",") if k.strip()]
    from .ticket_codes import new_seed
    INSTANCE_DIR.mkdir(exist_ok=True)
    path = INSTANCE_DIR / "ticket_signing_key"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w") as f:
            f.write(new_seed() + "\n")
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def from_environment():
    """Every setting, from environment variables with the documented defaults."""
    INSTANCE_DIR.mkdir(exist_ok=True)
    redis_url = os.environ.get("REDIS_URL") or None
    return {
        "SQLALCHEMY_DATABASE_URI": os.environ.get(
            "DATABASE_URL", f"sqlite:///{INSTANCE_DIR / 'booking.db'}"),
        "REDIS_URL": redis_url,
        # Flask-SocketIO's message queue (results and events to sockets, Redis
        # pub/sub: nothing kept, so no persistence needed); unset: REDIS_URL.
        # Without REDIS_URL (the embedded mode) there is none.
        "SOCKETIO_MESSAGE_QUEUE_URL": os.environ.get("SOCKETIO_MESSAGE_QUEUE_URL") or None,
        # Prefix of every Redis key and pub/sub channel, so that several
        # deployments (or test runs) can share one Redis server.
        "REDIS_NAMESPACE": os.environ.get("REDIS_NAMESPACE", "boxoffice"),
        # The Celery queue (a Redis list) that web processes feed and workers drain.
        "CELERY_QUEUE": os.environ.get("CELERY_QUEUE", "booking"),
        # The queue of the work after a sale (e-mails with their ticket PDFs, refund
        # reconciliation), drained by its own worker group so that it never takes a
        # sale worker's CPU from holds and payments. Default: CELERY_QUEUE + "-after-sale".
        "AFTER_SALE_QUEUE": os.environ.get("AFTER_SALE_QUEUE") or (
            os.environ.get("CELERY_QUEUE", "booking") + "-after-sale"),
        "SECRET_KEY": _secret_key(),
        "TICKET_SIGNING_KEYS": _ticket_signing_keys(),
        # Outgoing mail: smtp://user:pass@host:port, smtp+starttls://..., smtps://...;
        # unset, every mail is written as an .eml file under instance/outbox/.
        "SMTP_URL": os.environ.get("SMTP_URL") or None,
        "MAIL_FROM": os.environ.get("MAIL_FROM", "Boxoffice <tickets@boxoffice.invalid>"),
        # The site's address in links of e-mails (verification, password reset).
        "PUBLIC_URL": os.environ.get("PUBLIC_URL", "http://127.0.0.1:5000").rstrip("/"),
        "MAIL_OUTBOX_DIR": os.environ.get("MAIL_OUTBOX_DIR", str(INSTANCE_DIR / "outbox")),
        # How long a worker owns an outbox row it is sending; past it, another may send it.
        "MAIL_LEASE_SECONDS": _int("MAIL_LEASE_SECONDS", 120),
        "MAIL_SMTP_TIMEOUT_SECONDS": _float("MAIL_SMTP_TIMEOUT_SECONDS", 30.0),
        # How often beat hands unsent outbox rows to the workers again.
        "MAIL_RETRY_INTERVAL_SECONDS": _float("MAIL_RETRY_INTERVAL_SECONDS", 30.0),
        # The first wait after a refusal; it doubles at each attempt, up to 30 minutes.
        "MAIL_BACKOFF_FIRST_SECONDS": _float("MAIL_BACKOFF_FIRST_SECONDS", 15.0),
        # A mail that could not be sent for this long is given up (and reported by the audit).
        "MAIL_GIVE_UP_HOURS": _float("MAIL_GIVE_UP_HOURS", 48.0),
        "HOLD_TTL_SECONDS": _int("HOLD_TTL_SECONDS", 300),
        "DISCONNECT_GRACE_SECONDS": _int("DISCONNECT_GRACE_SECONDS", 30),
        "MAX_SEATS_PER_ORDER": _int("MAX_SEATS_PER_ORDER", 8),
        "MAX_OPEN_HOLDS": _int("MAX_OPEN_HOLDS", 2),
        # Best available: never leave a lone free seat beside the chosen ones when
        # another choice of the same size exists.
        "BEST_AVOID_SINGLE_SEATS": _bool("BEST_AVOID_SINGLE_SEATS", True),
        "TRUSTED_PROXIES": [p.strip() for p in os.environ.get(
            "TRUSTED_PROXIES", "127.0.0.1").split(",") if p.strip()],
        # How often beat releases expired holds and holds of departed buyers.
        "SWEEP_INTERVAL_SECONDS": _float("SWEEP_INTERVAL_SECONDS", 2.0),
        # Seat changes of one event are coalesced into one seats_changed per interval.
        "SEATS_CHANGED_INTERVAL_MS": _int("SEATS_CHANGED_INTERVAL_MS", 100),
        # Most requests a web process puts into one worker task (one transaction).
        "REQUEST_BATCH_MAX": _int("REQUEST_BATCH_MAX", 200),
        # A web process sends at most one task message per interval: a request that
        # finds the last one older goes at once, later ones wait for the interval's
        # end and go together (one task costs a worker a few ms whatever it carries).
        # The interval is REQUEST_BATCH_INTERVAL_MS from REQUEST_BATCH_FULL_RATE
        # requests a second on that process up, and shorter in proportion below.
        "REQUEST_BATCH_INTERVAL_MS": _float("REQUEST_BATCH_INTERVAL_MS", 100.0),
        "REQUEST_BATCH_FULL_RATE": _float("REQUEST_BATCH_FULL_RATE", 50.0),
        # Per-account limit on socket requests (limits' notation).
        "USER_RATE_LIMIT": os.environ.get("USER_RATE_LIMIT", "20/second;300/minute"),
        # An accepted request still unanswered after this long is enqueued again
        # (its message may have been lost with a killed worker; tasks are idempotent).
        "REQUEUE_AFTER_SECONDS": _float("REQUEUE_AFTER_SECONDS", 30.0),
        # A task held by a worker that died is redelivered after this long.
        "TASK_VISIBILITY_TIMEOUT_SECONDS": _int("TASK_VISIBILITY_TIMEOUT_SECONDS", 60),
        # The card processor behind checkout ('simulated': the built-in one).
        "PAYMENT_PROCESSOR": os.environ.get("PAYMENT_PROCESSOR", "simulated"),
        # The simulated processor's refunds: ok, refuse or timeout (for tests and demos).
        "SIM_REFUND_MODE": os.environ.get("SIM_REFUND_MODE", "ok"),
        # PAYMENT_PROCESSOR=stripe (docs/PAYMENTS.md): the account's keys, the
        # webhook endpoint's signing secret, and where the API and Stripe.js live.
        "STRIPE_SECRET_KEY": os.environ.get("STRIPE_SECRET_KEY", ""),
        "STRIPE_PUBLISHABLE_KEY": os.environ.get("STRIPE_PUBLISHABLE_KEY", ""),
        "STRIPE_WEBHOOK_SECRET": os.environ.get("STRIPE_WEBHOOK_SECRET", ""),
        "STRIPE_API_BASE": os.environ.get("STRIPE_API_BASE", "https://api.stripe.com"),
        "STRIPE_JS_URL": os.environ.get("STRIPE_JS_URL", "https://js.stripe.com/v3/"),
        # A payment waiting on the buyer's 3-D Secure challenge longer than this
        # is cancelled at the processor and its hold given back.
        "PAYMENT_ACTION_TIMEOUT_SECONDS": _float("PAYMENT_ACTION_TIMEOUT_SECONDS", 600.0),
        # How long a charge may take before its outcome counts as unknown
        # (the payment stays pending and reconciliation asks the processor).
        "PAYMENT_TIMEOUT_SECONDS": _float("PAYMENT_TIMEOUT_SECONDS", 10.0),
        # Payments a worker child decides in one round (two transactions) and whose
        # charges it asks of the processor at once; a larger batch runs in rounds.
        "PAYMENT_CONCURRENCY": _int("PAYMENT_CONCURRENCY", 16),
        # How often reconciliation settles unanswered payments.
        "RECONCILE_INTERVAL_SECONDS": _float("RECONCILE_INTERVAL_SECONDS", 10.0),
        "TOKEN_MAX_AGE_SECONDS": _int("TOKEN_MAX_AGE_SECONDS", 7 * 24 * 3600),
        # Waiting rooms (docs/WAITING_ROOM.md).
        # How long an admission token lets its buyer ask for holds.
        "ADMISSION_TTL_SECONDS": _int("ADMISSION_TTL_SECONDS", 900),
        # How often admission runs (a beat task; the embedded mode's sweep loop).
        "ADMISSION_INTERVAL_SECONDS": _float("ADMISSION_INTERVAL_SECONDS", 1.0),
        # Bounds of the derived ("auto") admission rate, buyers per minute.
        "AUTO_ADMISSION_MIN_PER_MIN": _int("AUTO_ADMISSION_MIN_PER_MIN", 30),
        "AUTO_ADMISSION_START_PER_MIN": _int("AUTO_ADMISSION_START_PER_MIN", 120),
        "AUTO_ADMISSION_MAX_PER_MIN": _int("AUTO_ADMISSION_MAX_PER_MIN", 6000),
        # The click-to-hold_result time the derived rate keeps, from the web
        # process's receipt to the worker's answer: while more than 1% of recent
        # hold answers take longer, it admits fewer buyers. 200: the product's
        # 250 ms target less what the server cannot see (the buyer's network,
        # the load balancer, the socket's send; ~45 ms at p99 in bench/surge.py).
        "LATENCY_TARGET_MS": _int("LATENCY_TARGET_MS", 200),
        # Load shedding: accepted requests not yet answered, beyond which new
        # holds are refused `busy`. 0: derived (booking.state.shedding).
        "SHED_QUEUE_DEPTH": _int("SHED_QUEUE_DEPTH", 0),
        # How long a buyer waits for a hold result before giving up; the derived
        # bound is what the workers finish in this long.
        "SHED_MAX_WAIT_SECONDS": _float("SHED_MAX_WAIT_SECONDS", 10.0),
        # Requests a second the smallest deployment (one worker, concurrency 2)
        # finishes at worst (every message carrying one request): measured
        # ~60 single-request transactions a second per process on these machines.
        "SHED_FLOOR_RPS": _float("SHED_FLOOR_RPS", 120.0),
        # Per client IP (generous: a venue or carrier NATs thousands of buyers).
        "IP_RATE_LIMIT": os.environ.get("IP_RATE_LIMIT", "1000/second;30000/minute"),
        # Sockets one account may hold open across every web instance.
        "MAX_SOCKETS_PER_ACCOUNT": _int("MAX_SOCKETS_PER_ACCOUNT", 10),
        # Read-only sockets of signed-out visitors from one client IP, across every web
        # instance (they watch seat maps; holding needs an account). Generous enough for
        # a household or an office behind one address, small enough that one host
        # cannot hold thousands of sockets open.
        "MAX_ANONYMOUS_SOCKETS_PER_IP": _int("MAX_ANONYMOUS_SOCKETS_PER_IP", 50),
        # Draining a web process on SIGTERM (booking.lifecycle): how long the
        # load balancer gets to notice, then how long handlers get to finish,
        # and the most the whole drain may take before the process exits.
        "DRAIN_NOTICE_SECONDS": _float("DRAIN_NOTICE_SECONDS", 1.0),
        "DRAIN_GRACE_SECONDS": _float("DRAIN_GRACE_SECONDS", 1.0),
        "DRAIN_TIMEOUT_SECONDS": _float("DRAIN_TIMEOUT_SECONDS", 30.0),
        # What a serving web process waits for one database round trip (connect,
        # read or write) before it gives up: a socket's ack then answers `busy`
        # instead of waiting on a stalled database (the pool checkout is
        # bounded at 3 s on its own). Workers and the CLI are not bounded by it.
        "WEB_DB_TIMEOUT_SECONDS": _float("WEB_DB_TIMEOUT_SECONDS", 5.0),
        # A hold, release or pay request not yet recorded in flight this long
        # after the web process received it is answered `busy` (nothing done):
        # its ack has waited too long on Redis, the database or the process's CPU.
        "ACK_DEADLINE_SECONDS": _float("ACK_DEADLINE_SECONDS", 5.0),
        # Connections one web process serves at most (eventlet's pool size).
        "WEB_MAX_CONNECTIONS": _int("WEB_MAX_CONNECTIONS", 10000),
        "LOG_LEVEL": os.environ.get("LOG_LEVEL", "INFO"),
        "SQLALCHEMY_ENGINE_OPTIONS": {"pool_pre_ping": True},
        "MAX_CONTENT_LENGTH": 64 * 1024,
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
    }
