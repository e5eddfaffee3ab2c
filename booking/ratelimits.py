"""Abuse limits: per account (tight) and per client IP (generous), REST and sockets alike;
sign-in and sign-up attempts per email and per IP (tight).

Flask-Limiter counts REST calls (the `limits` sliding-window-counter strategy).
Socket events are counted with the same algorithm on the same counters, under
the very keys its application limits use (`account:<id>` / `ip:<address>`,
scope `global`), by one script of the state backend (booking.state.backends,
admit), so one account's REST calls and socket events draw on one budget, and
with REDIS_URL set the counters are in Redis: they hold across every web
instance. Without Redis (the embedded mode) they are in Flask-Limiter's memory
storage.

The client IP is the connection's address, unless that address is a trusted
proxy (TRUSTED_PROXIES): then X-Forwarded-For is read from the right, skipping
trusted proxies, and the first other address is the client. A client cannot
pick its own IP by sending the header itself.
"""
import hashlib
import ipaddress
import logging
import os

import redis
from flask import request
from flask_limiter import ApplicationLimit
from flask_login import current_user
from limits import parse_many

from .errors import RateLimited
from .extensions import limiter
from .state.backends import redis_pool
from .runtime import runtime

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


def check_sign_in(email):
    """Count this request's sign-in or sign-up attempt (see RequestLimits.check_sign_in)."""
    runtime().rate_limit.check_sign_in(email, client_ip())


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
    # Sign-in and sign-up attempts: tight, per email and per client IP (a guessed
    # password costs an attacker a minute, not a millisecond).
    app.config.setdefault("LOGIN_EMAIL_RATE_LIMIT",
                          os.environ.get("LOGIN_EMAIL_RATE_LIMIT") or "5/minute;30/hour")
    app.config.setdefault("LOGIN_IP_RATE_LIMIT",
                          os.environ.get("LOGIN_IP_RATE_LIMIT") or "60/minute;1000/hour")
    app.config.setdefault("RATELIMIT_STORAGE_URI", app.config["REDIS_URL"] or "memory://")
    if app.config["REDIS_URL"]:
        # The process's one pool (blocking: see booking.state.backends.redis_pool).
        app.config.setdefault("RATELIMIT_STORAGE_OPTIONS", {
            "key_prefix": f"{namespace}:limits",
            "connection_pool": redis_pool(app.config["REDIS_URL"])})
    # limits' sliding-window counter: a burst at a window's edge cannot double
    # the rate (the previous window counts, weighted), and a check is a few
    # commands on two counters, not a list of every hit. The socket path counts
    # on the same keys with the same algorithm (RequestLimits).
    app.config.setdefault("RATELIMIT_STRATEGY", "sliding-window-counter")
    app.config.setdefault("RATELIMIT_HEADERS_ENABLED", True)
    # Redis down: serve rather than fail every call (readiness reports Redis).
    app.config.setdefault("RATELIMIT_SWALLOW_ERRORS", True)
    limiter.init_app(app)
    state = app.extensions["boxoffice"].state
    if not app.config["REDIS_URL"]:
        # The embedded mode: socket events count in Flask-Limiter's own memory.
        state.rate_storage = limiter.storage
    # Set after init_app, which would otherwise overwrite each limit's exempt_when.
    limiter.limit_manager.set_application_limits([
        ApplicationLimit(limit_provider=lambda: app.config["USER_RATE_LIMIT"],
                         key_function=_rest_account_key,
                         exempt_when=lambda: _not_limited() or not current_user.is_authenticated
                         ).bind(limiter),
        ApplicationLimit(limit_provider=lambda: app.config["IP_RATE_LIMIT"],
                         key_function=_rest_ip_key, exempt_when=_not_limited).bind(limiter),
    ])


class _Budget:
    """One parsed limit (`20/second`), parsed once: its counter key for an identity."""
    __slots__ = ("head", "tail", "amount", "window", "label")

    def __init__(self, item, label):
        self.head = f"{item.namespace}/"
        # limits' RateLimitItem.key_for(identity, SCOPE), without rebuilding it per event.
        self.tail = f"/{SCOPE}/{item.amount}/{item.multiples}/{item.GRANULARITY.name}"
        self.amount = item.amount
        self.window = item.get_expiry()
        self.label = label

    def of(self, identity):
        return (f"{self.head}{identity}{self.tail}", self.amount, self.window)


def _budgets(spec, label):
    return tuple(_Budget(item, label) for item in parse_many(spec))


class RequestLimits:
    """Socket events counted against the same account and IP budgets as REST calls.

    The limits are parsed once, here. Each check is one round trip to the
    state (booking.state.backends admit): limits' sliding-window counter on
    the keys Flask-Limiter's own strategy (sliding-window-counter) uses for
    REST, all budgets at once, nothing counted when one is spent. The request
    path (booking.intake) sends the same budgets together with its ledger
    lookup and begin, in the same round trip.
    """

    def __init__(self, app, state):
        self.app = app
        self.state = state
        self._account = _budgets(app.config["USER_RATE_LIMIT"], "account")
        self._ip = _budgets(app.config["IP_RATE_LIMIT"], "ip")
        self._labels = (tuple(b.label for b in self._account),
                        tuple(b.label for b in self._account + self._ip))
        self._login = None  # parsed on first use: init_app sets their defaults

    def budgets(self, user_id, ip=None):
        """([(counter key, limit, window s)], labels) of one event of user_id from ip."""
        account = f"account:{user_id}"
        spent = [b.of(account) for b in self._account]
        if not ip:
            return spent, self._labels[0]
        address = f"ip:{ip}"
        spent += [b.of(address) for b in self._ip]
        return spent, self._labels[1]

    @staticmethod
    def refusal(detail, labels):
        """The RateLimited error of a state's ('limited', (index, seconds)) answer."""
        index, seconds = detail
        return RateLimited(retry_after_s=max(1, round(seconds)), limit=labels[index])

    def check(self, user_id, ip=None):
        """Count one event; raise RateLimited (with retry_after_s) if a budget is spent."""
        self._hit(*self.budgets(user_id, ip))

    def check_ip(self, ip):
        """Count a new connection against its IP only (a reconnect is not the buyer's doing)."""
        self._hit([b.of(f"ip:{ip}") for b in self._ip], [b.label for b in self._ip])

    def check_sign_in(self, email, ip):
        """Count one sign-in or sign-up attempt against its email and its client IP.

        Raises RateLimited (with retry_after_s and limit 'email' or 'ip') when
        either budget is spent. The email is kept only as a hash. Redis down:
        the attempt is let through (logged), like every other limit here.
        """
        if self._login is None:
            self._login = (_budgets(self.app.config["LOGIN_EMAIL_RATE_LIMIT"], "email"),
                           _budgets(self.app.config["LOGIN_IP_RATE_LIMIT"], "ip"))
        by_email, by_ip = self._login
        digest = hashlib.sha256(email.strip().lower().encode()).hexdigest()[:32]
        budgets = ([b.of(f"login-email:{digest}") for b in by_email]
                   + [b.of(f"login-ip:{ip}") for b in by_ip])
        try:
            self._hit(budgets, [b.label for b in by_email + by_ip])
        except RateLimited as err:
            err.message = (f"Too many attempts. Try again in {err.details['retry_after_s']} "
                           "seconds.")
            raise
        except redis.RedisError:
            log.warning("sign-in limits unavailable (Redis)")

    def _hit(self, budgets, labels):
        outcome, detail = self.state.admit(budgets)
        if outcome == "limited":
            raise self.refusal(detail, labels)
