"""Checks a process runs before it serves: refuse a guessable key, warn of an evicting Redis.

A SECRET_KEY signs session cookies, bearer tokens and waiting-room admission
tokens: whoever knows it can sign in as anyone. A key shorter than 32 bytes or
one of the placeholders shipped in deploy/ is refused, and the process exits
non-zero with a message that says what to do (web, workers, beat and the CLI
alike: they all build the app through create_app).

Redis keeps the request ledger, the overdue-request index and the Celery queue:
an evicted key loses an accepted request's answer silently, so Redis must run
with maxmemory-policy noeviction (see docs/OPERATIONS.md). Only a warning:
a managed Redis may hide its policy, and the process still works until memory
runs out.
"""
import logging
import redis

log = logging.getLogger(__name__)

MIN_SECRET_KEY_BYTES = 32
# Every placeholder SECRET_KEY shipped in deploy/ (tests/test_startup_checks.py
# keeps this list in step with the files).
PLACEHOLDER_SECRET_KEYS = frozenset({
    "change-me-to-64-random-hex-characters",
})


class StartupRefused(SystemExit):
    """Raised to stop a process before it serves; the message goes to stderr, exit code 1."""

    def __init__(self, message):
        super().__init__(f"boxoffice: refusing to start: {message}")


def secret_key_problem(key):
    """Why a SECRET_KEY must not be used, or None."""
    if not isinstance(key, (str, bytes)) or not key:
        return "SECRET_KEY is not set."
    raw = key.encode() if isinstance(key, str) else key
    text = raw.decode(errors="replace").strip()
    if text in PLACEHOLDER_SECRET_KEYS or "change-me" in text.lower():
        return ("SECRET_KEY is the placeholder shipped in deploy/; anyone could forge "
                "sessions and tokens with it.")
    if len(raw) < MIN_SECRET_KEY_BYTES:
        return (f"SECRET_KEY is {len(raw)} bytes; use at least {MIN_SECRET_KEY_BYTES} "
                "random bytes.")
    return None


def check_secret_key(app):
    """Raise StartupRefused (exit 1) if the app's SECRET_KEY is short or a placeholder."""
    problem = secret_key_problem(app.config.get("SECRET_KEY"))
    if problem:
        raise StartupRefused(
            problem + " Generate one with: python3 -c 'import secrets; "
            "print(secrets.token_hex(32))' and give every process the same value.")


def check_redis_eviction(app):
    """Log a warning when Redis may evict keys (maxmemory-policy other than noeviction)."""
    url = app.config.get("REDIS_URL")
    if not url:
        return None
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
        # INFO rather than CONFIG GET: managed Redis and ACL users often may not CONFIG.
        policy = client.info("memory").get("maxmemory_policy")
        client.close()
    except redis.RedisError as err:
        log.warning("could not read Redis's maxmemory-policy (%s); it must be noeviction",
                    err)
        return None
    if policy is not None and policy != "noeviction":
        log.warning("Redis's maxmemory-policy is %r, not 'noeviction': under memory pressure "
                    "Redis may evict request ledger entries and queued tasks, and buyers "
                    "would wait for answers that never come. Set maxmemory-policy noeviction "
                    "(docs/OPERATIONS.md).", policy)
    return policy


def run(app):
    """Every start-up check, in create_app."""
    check_secret_key(app)
    check_redis_eviction(app)
