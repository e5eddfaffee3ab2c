"""Security headers on every response: CSP, framing, sniffing, referrer.

One after_request hook, so every page (the buyer's, the back office's, the door's)
gets them without doing anything. The Content-Security-Policy allows this origin's
scripts, styles, images (and data: images: Bootstrap's icons and QR codes are
data: SVGs), fonts and connections (HTTP and the Socket.IO WebSocket), and nothing
inline: the one inline script, the import map in templates/base.html, carries a
per-response nonce (`csp_nonce()` in templates). JSON data blocks
(`<script type="application/json">`) are not scripts and need none.

Strict-Transport-Security is sent by the load balancer that terminates TLS
(deploy/), not here: the app cannot tell whether the client's connection is TLS.
"""
import secrets

from flask import current_app, g

# Who may frame pages: nobody (the login page and the payment window included).
# The card processor's own sources (Stripe.js, its frames and API) are added to these
# when it needs them (booking.payments.csp_sources).
_DIRECTIVES = {
    "default-src": ["'self'"],
    "script-src": ["'self'", "'nonce-{nonce}'"],
    "style-src": ["'self'"],
    "img-src": ["'self'", "data:"],
    "font-src": ["'self'"],
    # 'self' covers ws:/wss: to this host (CSP Level 3): the Socket.IO transport.
    "connect-src": ["'self'"],
    "frame-src": ["'self'"],
    "object-src": ["'none'"],
    "base-uri": ["'none'"],
    "form-action": ["'self'"],
    "frame-ancestors": ["'none'"],
}


def _policy_template(config):
    """The policy with a {nonce} slot, for this app's configuration."""
    from .payments import csp_sources
    directives = {name: list(values) for name, values in _DIRECTIVES.items()}
    for name, sources in csp_sources(config).items():
        kept = [v for v in directives.get(name, []) if v != "'none'"]
        directives[name] = kept + [s for s in sources if s not in kept]
    return "; ".join(f"{name} {' '.join(values)}" for name, values in directives.items())


HEADERS = {
    "X-Content-Type-Options": "nosniff",
    # For browsers that do not know frame-ancestors.
    "X-Frame-Options": "DENY",
    # Order and event URLs stay on this site; other sites see only the origin.
    "Referrer-Policy": "strict-origin-when-cross-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
}


def csp_nonce():
    """This response's nonce for an inline script, made on first use."""
    nonce = g.get("_csp_nonce")
    if nonce is None:
        nonce = g._csp_nonce = secrets.token_urlsafe(16)
    return nonce


def content_security_policy():
    return current_app.config["CSP_POLICY_TEMPLATE"].replace("{nonce}", csp_nonce())


def _set_headers(response):
    response.headers["Content-Security-Policy"] = content_security_policy()
    for name, value in HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def init_app(app):
    """Send the headers on every response; give templates csp_nonce()."""
    app.config["CSP_POLICY_TEMPLATE"] = _policy_template(app.config)
    app.after_request(_set_headers)
    app.jinja_env.globals["csp_nonce"] = csp_nonce
