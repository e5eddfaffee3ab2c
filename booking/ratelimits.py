"""Abuse limits: per account (tight) and per client IP (generous), REST and sockets alike.

Flask-Limiter counts REST calls. Socket events are counted by Flask-Limiter's
own strategy object, on its storage, under the very keys its application limits
use (`account:<id>` / `ip:<address>`, scope `global`), so one account's REST
calls and socket events draw on one budget, and with REDIS_URL set the counters
are in Redis: they hold across every web instance. Without Redis (the embedded
mode) they are in process memory.

The client IP is the connection's address, unless that address is a trusted
proxy (TRUSTED_PROXIES): then X-Forwarded-For is read from the right, skipping
trusted proxies, and the first other address is the client. A client cannot
pick its own IP by sending the header itself.
"""
import ipaddress
import logging
import time

from flask import request
from flask_limiter import ApplicationLimit
from flask_login import current_user
from limits import parse_many

from .errors import RateLimited
from .extensions import limiter
from .state.backends import redis_pool

log = logging.getLogger(__name__)

SCOPE = "global"  # the scope Flask-Limiter gives application-wide limits


def _trusted(address, proxies):
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    for proxy in proxies:
        try:
            if ip in ipaddress.ip_network(proxy, strict=False):
                return True
        except ValueError:
            continue
    return False


def client_ip(environ=None, proxies=None):
    """The client's address, through trusted proxies only (see the module docstring)."""
    from flask import current_app
    environ = environ if environ is not None else request.environ
    proxies = proxies if proxies is not None else current_app.config["TRUSTED_PROXIES"]
    address = environ.get("REMOTE_ADDR") or "unknown"
    if not _trusted(address, proxies):
        return address
    hops = [h.strip() for h in environ.get("HTTP_X_FORWARDED_FOR", "").split(",") if h.strip()]
    for hop in reversed(hops):
        if not _trusted(hop, proxies):
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:
                return address  # garbage from beyond the proxy: count the proxy
    return hops[0] if hops else address


def account_key(user_id):
    return f"account:{user_id}"


def ip_key(address):
    return f"ip:{address}"


def _rest_account_key():
    return account_key(current_user.id) if current_user.is_authenticated else ""


def _rest_ip_key():
    return ip_key(client_ip())


def _not_limited():
    """Probes, metrics and static files are never limited (a load balancer polls them)."""
    endpoint = request.endpoint or ""
    return endpoint == "static" or endpoint.startswith("ops.") or endpoint == "pages.vendor"


def init_app(app):
    """Bind Flask-Limiter: Redis storage when REDIS_URL is set, the app's limits, JSON errors."""
    namespace = app.config["REDIS_NAMESPACE"]
    app.config.setdefault("RATELIMIT_STORAGE_URI", app.config["REDIS_URL"] or "memory://")
    if app.config["REDIS_URL"]:
        # The process's one pool (blocking: see booking.state.backends.redis_pool).
        app.config.setdefault("RATELIMIT_STORAGE_OPTIONS", {
            "key_prefix": f"{namespace}:limits",
            "connection_pool": redis_pool(app.config["REDIS_URL"])})
    # The moving window: a burst at a window's edge cannot double the rate.
    app.config.setdefault("RATELIMIT_STRATEGY", "moving-window")
    app.config.setdefault("RATELIMIT_HEADERS_ENABLED", True)
    # Redis down: serve rather than fail every call (readiness reports Redis).
    app.config.setdefault("RATELIMIT_SWALLOW_ERRORS", True)
    limiter.init_app(app)
    # Set after init_app, which would otherwise overwrite each limit's exempt_when.
    limiter.limit_manager.set_application_limits([
        ApplicationLimit(limit_provider=lambda: app.config["USER_RATE_LIMIT"],
                         key_function=_rest_account_key,
                         exempt_when=lambda: _not_limited() or not current_user.is_authenticated
                         ).bind(limiter),
        ApplicationLimit(limit_provider=lambda: app.config["IP_RATE_LIMIT"],
                         key_function=_rest_ip_key, exempt_when=_not_limited).bind(limiter),
    ])


class RequestLimits:
    """Socket events counted against the same account and IP budgets as REST calls."""

    def __init__(self, app):
        self.app = app

    def check(self, user_id, ip=None):
        """Count one event; raise RateLimited (with retry_after_s) if a budget is spent."""
        budgets = [(self.app.config["USER_RATE_LIMIT"], account_key(user_id))]
        if ip:
            budgets.append((self.app.config["IP_RATE_LIMIT"], ip_key(ip)))
        self._hit(budgets)

    def check_ip(self, ip):
        """Count a new connection against its IP only (a reconnect is not the buyer's doing)."""
        self._hit([(self.app.config["IP_RATE_LIMIT"], ip_key(ip))])

    def _hit(self, budgets):
        strategy = limiter.limiter
        for spec, key in budgets:
            for item in parse_many(spec):
                if not strategy.hit(item, key, SCOPE):
                    reset = strategy.get_window_stats(item, key, SCOPE).reset_time
                    raise RateLimited(retry_after_s=max(1, round(reset - time.time())),
                                      limit=key.split(":", 1)[0])
