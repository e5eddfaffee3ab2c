"""Signing out, across two real web processes behind the Redis message queue.

Signing out (DELETE /api/v1/session) ends that sign-in: its cookie, the token issued
with it and the sockets opened with them, on every process at once; other sign-ins of
the account stay. Signing out everywhere (DELETE /api/v1/sessions) ends every cookie,
token and socket of the account. A new socket with an ended cookie or token is refused."""
import time
import uuid

import pytest
import requests
import socketio

from tests.harness import wait_until

PASSWORD = "correct-horse-battery"


def cookie_header(http):
    return "; ".join(f"{c.name}={c.value}" for c in http.cookies)


def open_socket(url, token=None, cookie=None):
    """A socket client; returns (client, refusal): refusal is the connect_error data or None."""
    client = socketio.Client(reconnection=False)
    refusals = []
    client.on("connect_error", refusals.append)
    try:
        client.connect(url, auth={"token": token} if token else None,
                       headers={"Cookie": cookie} if cookie else {},
                       transports=["websocket"], wait_timeout=15)
    except socketio.exceptions.ConnectionError:
        return client, (refusals[0] if refusals else "refused")
    return client, None


@pytest.fixture
def two_webs(cluster):
    cluster.worker(concurrency=1)
    return cluster.web().url, cluster.web().url


def sign_up(url):
    http = requests.Session()
    email = f"out-{uuid.uuid4().hex[:10]}@example.test"
    r = http.post(url + "/api/v1/users", json={"email": email, "password": PASSWORD},
                  timeout=30)
    assert r.status_code == 201, r.text
    return http, email, r.json()["token"]


def _status(url, **auth):
    headers = {"Cookie": auth["cookie"]} if "cookie" in auth else {
        "Authorization": f"Bearer {auth['token']}"}
    return requests.get(url + "/api/v1/orders", headers=headers, timeout=10).status_code


def _sign_in(url, email):
    r = requests.post(url + "/api/v1/session", json={"email": email, "password": PASSWORD},
                      timeout=30)
    assert r.status_code == 200, r.text
    return r.json()["token"]


def test_sign_out_ends_this_sign_in_and_sign_out_everywhere_ends_all(two_webs):
    web_a, web_b = two_webs
    http, email, token = sign_up(web_a)
    cookie = cookie_header(http)
    other = _sign_in(web_b, email)      # another device
    third = _sign_in(web_a, email)      # a third, signed out by its token

    for url in (web_a, web_b):
        assert _status(url, cookie=cookie) == 200
        for t in (token, other, third):
            assert _status(url, token=t) == 200
    by_other, refused = open_socket(web_b, token=other)
    assert refused is None
    by_cookie, refused = open_socket(web_a, cookie=cookie)
    assert refused is None
    by_token, refused = open_socket(web_b, token=token)
    assert refused is None
    try:
        # Sign out with the cookie on web A: that sign-in's cookie and token end, at once,
        # on both processes; its sockets (one on each process) are disconnected.
        assert http.delete(web_a + "/api/v1/session", timeout=10).status_code == 204
        for url in (web_a, web_b):
            assert _status(url, cookie=cookie) == 401, url
            assert _status(url, token=token) == 401, url
            assert _status(url, token=other) == 200, url
            assert _status(url, token=third) == 200, url
        wait_until(lambda: not by_cookie.connected and not by_token.connected, 5,
                   "the signed-out sign-in's sockets disconnected")
        time.sleep(1)
        assert by_other.connected, "another sign-in's socket stays"
        for url in (web_a, web_b):
            for kwargs in ({"cookie": cookie}, {"token": token}):
                client, refused = open_socket(url, **kwargs)
                assert refused is not None, (url, kwargs)
                assert not client.connected

        # Sign out with a bearer token: only that token ends.
        assert requests.delete(web_b + "/api/v1/session", timeout=10,
                               headers={"Authorization": f"Bearer {third}"}).status_code == 204
        assert _status(web_a, token=third) == 401 and _status(web_a, token=other) == 200

        # Sign out everywhere (from the other device): everything of the account ends.
        fresh = _sign_in(web_a, email)
        by_fresh, refused = open_socket(web_a, token=fresh)
        assert refused is None
        r = requests.delete(web_b + "/api/v1/sessions", timeout=10,
                            headers={"Authorization": f"Bearer {other}"})
        assert r.status_code == 204
        for url in (web_a, web_b):
            for t in (other, fresh):
                r = requests.get(url + "/api/v1/orders", timeout=10,
                                 headers={"Authorization": f"Bearer {t}"})
                assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
        wait_until(lambda: not by_other.connected and not by_fresh.connected, 5,
                   "every socket of the account disconnected")
        client, refused = open_socket(web_b, token=other)
        assert refused is not None
        # Signed out everywhere already: asking again without credentials is 401.
        assert requests.delete(web_b + "/api/v1/sessions", timeout=10).status_code == 401

        # Signing in again works.
        client, refused = open_socket(web_a, token=_sign_in(web_b, email))
        assert refused is None
        client.disconnect()
    finally:
        for c in (by_other, by_cookie, by_token):
            if c.connected:
                c.disconnect()


def test_sign_out_in_the_embedded_mode(cluster):
    web = cluster.web(extra_env={"REDIS_URL": ""}).url
    http, email, token = sign_up(web)
    cookie = cookie_header(http)
    other = _sign_in(web, email)
    sock, refused = open_socket(web, token=token)
    assert refused is None
    other_sock, refused = open_socket(web, token=other)
    assert refused is None
    assert http.delete(web + "/api/v1/session", timeout=10).status_code == 204
    assert requests.get(web + "/api/v1/orders", headers={"Cookie": cookie},
                        timeout=10).status_code == 401
    assert requests.get(web + "/api/v1/orders", headers={"Authorization": f"Bearer {token}"},
                        timeout=10).status_code == 401
    wait_until(lambda: not sock.connected, 5, "socket disconnected")
    _client, refused = open_socket(web, cookie=cookie)
    assert refused is not None
    assert _status(web, token=other) == 200 and other_sock.connected
    assert requests.delete(web + "/api/v1/sessions", timeout=10,
                           headers={"Authorization": f"Bearer {other}"}).status_code == 204
    assert _status(web, token=other) == 401
    wait_until(lambda: not other_sock.connected, 5, "socket disconnected")
