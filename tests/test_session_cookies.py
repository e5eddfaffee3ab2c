"""The session cookie: Secure unless the site is served on plain localhost (COOKIE_SECURE),
and a lifetime counted from the last use (each request renews it)."""
import time

import pytest

from tests.contract import STRONG_PASSWORD


def sign_up_on(client, base_url, email="cookie@example.test"):
    r = client.post("/api/v1/users", base_url=base_url,
                    json={"email": email, "password": STRONG_PASSWORD})
    assert r.status_code == 201, r.get_data(as_text=True)
    return r.headers["Set-Cookie"]


@pytest.mark.parametrize("base_url, secure", [
    ("https://tickets.example.com", True),
    ("http://tickets.example.com", True),   # behind a TLS-terminating balancer
    ("http://10.1.2.3:8000", True),
    ("http://127.0.0.1:5000", False),
    ("http://localhost:8080", False),
    ("http://[::1]:5000", False),
])
def test_secure_unless_served_on_localhost(client, base_url, secure):
    cookie = sign_up_on(client, base_url)
    assert cookie.startswith("session=")
    assert ("; Secure" in cookie) is secure, cookie
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie


@pytest.mark.app_config(COOKIE_SECURE="true")
def test_always_secure_when_set(client):
    assert "; Secure" in sign_up_on(client, "http://127.0.0.1:5000")


@pytest.mark.app_config(COOKIE_SECURE="false")
def test_never_secure_when_turned_off(client):
    assert "; Secure" not in sign_up_on(client, "http://tickets.example.com")


def test_a_session_lasts_twelve_hours_from_its_last_use(client):
    cookie = sign_up_on(client, "http://127.0.0.1")
    assert "Expires=" in cookie
    # Each request renews the cookie (its expiry and its signed timestamp).
    renewed = client.get("/api/v1/orders", base_url="http://127.0.0.1")
    assert renewed.status_code == 200
    assert renewed.headers["Set-Cookie"].startswith("session=")


@pytest.mark.app_config(SESSION_LIFETIME_SECONDS=3)
def test_an_unused_session_expires_and_use_keeps_it(client):
    sign_up_on(client, "http://localhost")
    for _ in range(3):  # used every 1.5 s: 4.5 s in all, longer than the lifetime
        time.sleep(1.5)
        assert client.get("/api/v1/orders").status_code == 200
    time.sleep(4)  # unused for longer than the lifetime
    assert client.get("/api/v1/orders").status_code == 401


@pytest.mark.parametrize("path", ["/static/js/common.js",
                                  "/vendor/bootstrap/bootstrap.bundle.min.js"])
def test_static_files_leave_the_session_cookie_alone(client, path):
    """A static file neither reads nor renews the session. Renewing it there would write
    back the cookie as it was when the file was asked for: a file still loading while
    the buyer logs out put the signed-out session's cookie back, and the "You are signed
    out." note was lost. It also keeps static files cacheable (no Set-Cookie, no Vary)."""
    sign_up_on(client, "http://127.0.0.1")
    r = client.get(path, base_url="http://127.0.0.1")
    assert r.status_code == 200
    assert "Set-Cookie" not in r.headers
    assert "Cookie" not in r.headers.get("Vary", "")
    # A page and the API still renew it.
    assert client.get("/api/v1/orders", base_url="http://127.0.0.1").headers[
        "Set-Cookie"].startswith("session=")
