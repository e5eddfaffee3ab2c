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


def from_environment():
    """Every setting, from environment variables with the documented defaults."""
    INSTANCE_DIR.mkdir(exist_ok=True)
    redis_url = os.environ.get("REDIS_URL") or None
    return {
        "SQLALCHEMY_DATABASE_URI": os.environ.get(
            "DATABASE_URL", f"sqlite:///{INSTANCE_DIR / 'booking.db'}"),
        "REDIS_URL": redis_url,
        # Prefix of every Redis key and pub/sub channel, so that several
        # deployments (or test runs) can share one Redis server.
        "REDIS_NAMESPACE": os.environ.get("REDIS_NAMESPACE", "boxoffice"),
        # The Celery queue (a Redis list) that web processes feed and workers drain.
        "CELERY_QUEUE": os.environ.get("CELERY_QUEUE", "booking"),
        "SECRET_KEY": _secret_key(),
        "HOLD_TTL_SECONDS": _int("HOLD_TTL_SECONDS", 300),
        "DISCONNECT_GRACE_SECONDS": _int("DISCONNECT_GRACE_SECONDS", 30),
        "MAX_SEATS_PER_ORDER": _int("MAX_SEATS_PER_ORDER", 8),
        "MAX_OPEN_HOLDS": _int("MAX_OPEN_HOLDS", 2),
        "TRUSTED_PROXIES": [p.strip() for p in os.environ.get(
            "TRUSTED_PROXIES", "127.0.0.1").split(",") if p.strip()],
        # How often beat releases expired holds and holds of departed buyers.
        "SWEEP_INTERVAL_SECONDS": _float("SWEEP_INTERVAL_SECONDS", 2.0),
        # Seat changes of one event are coalesced into one seats_changed per interval.
        "SEATS_CHANGED_INTERVAL_MS": _int("SEATS_CHANGED_INTERVAL_MS", 100),
        # Most requests a web process puts into one worker task (one transaction).
        "REQUEST_BATCH_MAX": _int("REQUEST_BATCH_MAX", 200),
        # Under load (more than one request waiting), a web process waits this
        # long for more before publishing, so that one task carries many.
        "REQUEST_BATCH_LINGER_MS": _float("REQUEST_BATCH_LINGER_MS", 5.0),
        # Per-account limit on socket requests (limits' notation).
        "USER_RATE_LIMIT": os.environ.get("USER_RATE_LIMIT", "20/second;300/minute"),
        # An accepted request still unanswered after this long is enqueued again
        # (its message may have been lost with a killed worker; tasks are idempotent).
        "REQUEUE_AFTER_SECONDS": _float("REQUEUE_AFTER_SECONDS", 30.0),
        # A task held by a worker that died is redelivered after this long.
        "TASK_VISIBILITY_TIMEOUT_SECONDS": _int("TASK_VISIBILITY_TIMEOUT_SECONDS", 60),
        # The card processor behind checkout ('simulated': the built-in one).
        "PAYMENT_PROCESSOR": os.environ.get("PAYMENT_PROCESSOR", "simulated"),
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
        # How often reconciliation settles unanswered payments.
        "RECONCILE_INTERVAL_SECONDS": _float("RECONCILE_INTERVAL_SECONDS", 10.0),
        "TOKEN_MAX_AGE_SECONDS": _int("TOKEN_MAX_AGE_SECONDS", 7 * 24 * 3600),
        "LOG_LEVEL": os.environ.get("LOG_LEVEL", "INFO"),
        "SQLALCHEMY_ENGINE_OPTIONS": {"pool_pre_ping": True},
        "MAX_CONTENT_LENGTH": 64 * 1024,
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
    }
