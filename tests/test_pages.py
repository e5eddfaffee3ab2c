"""Pages for people: what a buyer gets from a wrong link."""


def test_unknown_event_page_is_a_friendly_404(client):
    """A link to an event that does not exist: a 404 page that leads back to the events."""
    r = client.get("/events/999999")
    assert r.status_code == 404
    assert b"We could not find that event" in r.data
    assert b'href="/"' in r.data


BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


def test_a_browser_gets_error_pages_and_programs_get_json(client):
    """Issue #18: a person following a wrong link gets a page, with the strict CSP; the API
    and clients that do not ask for HTML keep the contract's JSON."""
    for path in ("/nope", "/events/abc", "/orders/abc"):
        r = client.get(path, headers={"Accept": BROWSER_ACCEPT})
        assert r.status_code == 404, path
        assert r.mimetype == "text/html", path
        assert b"We could not find that page" in r.data and b'href="/"' in r.data
        assert "frame-ancestors 'none'" in r.headers["Content-Security-Policy"]
        assert "unsafe-inline" not in r.headers["Content-Security-Policy"]
    r = client.post("/", headers={"Accept": BROWSER_ACCEPT})
    assert r.status_code == 405 and r.mimetype == "text/html"
    for path, accept in (("/api/v1/nope", BROWSER_ACCEPT), ("/api/v1/events/abc", BROWSER_ACCEPT),
                         ("/nope", "application/json"), ("/nope", "*/*"), ("/nope", None)):
        r = client.get(path, headers={"Accept": accept} if accept else {})
        assert r.status_code == 404 and r.mimetype == "application/json", (path, accept)
        assert r.get_json()["error"]["code"] == "not_found"


def test_missing_order_page_is_a_404_and_get_logout_signs_nobody_out(client):
    r = client.get("/logout", headers={"Accept": BROWSER_ACCEPT})
    assert r.status_code == 303 and r.headers["Location"].endswith("/")
    r = client.post("/api/v1/users", json={"email": "pages@example.test",
                                           "password": "correct-horse-battery"})
    assert r.status_code == 201
    r = client.get("/orders/999999", headers={"Accept": BROWSER_ACCEPT})
    assert r.status_code == 404 and b"We could not find that order" in r.data
    r = client.get("/logout", headers={"Accept": BROWSER_ACCEPT})
    assert r.status_code == 303 and r.headers["Location"].endswith("/account")
    r = client.get("/account", headers={"Accept": BROWSER_ACCEPT})
    assert r.status_code == 200
    assert b"Log out everywhere" in r.data and b"pages@example.test" in r.data
    assert client.get("/api/v1/orders").status_code == 200, "still signed in"
