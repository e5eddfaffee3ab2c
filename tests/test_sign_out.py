"""Signing out ends every session of the account at once, across two real web processes
behind the Redis message queue: the old cookie, the old bearer token and the open
sockets stop working, and a new socket with the signed-out cookie or token is refused."""
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


def test_sign_out_ends_cookie_token_and_sockets_on_every_web_process(two_webs):
    web_a, web_b = two_webs
    http, email, token = sign_up(web_a)
    cookie = cookie_header(http)
    bearer = {"Authorization": f"Bearer {token}"}
    # A second sign-in (another device): its token is ended too.
    other = requests.post(web_b + "/api/v1/session", json={"email": email, "password": PASSWORD},
                          timeout=30).json()["token"]

    assert requests.get(web_b + "/api/v1/orders", headers={"Cookie": cookie},
                        timeout=10).status_code == 200
    assert requests.get(web_b + "/api/v1/orders", headers=bearer, timeout=10).status_code == 200
    by_token, refused = open_socket(web_b, token=other)
    assert refused is None
    by_cookie, refused = open_socket(web_a, cookie=cookie)
    assert refused is None
    local_token, refused = open_socket(web_a, token=token)
    assert refused is None
    try:
        # Sign out on web A.
        assert http.delete(web_a + "/api/v1/session", timeout=10).status_code == 204

        # At once, on the other process too: no grace period.
        for url in (web_a, web_b):
            r = requests.get(url + "/api/v1/orders", headers={"Cookie": cookie}, timeout=10)
            assert r.status_code == 401, (url, r.text)
            assert r.json()["error"]["code"] == "unauthorized"
            for t in (token, other):
                r = requests.get(url + "/api/v1/orders", headers={"Authorization": f"Bearer {t}"},
                                 timeout=10)
                assert r.status_code == 401, (url, r.text)
        # The open sockets are disconnected by the server, on both processes.
        wait_until(lambda: not by_token.connected and not by_cookie.connected
                   and not local_token.connected, 5, "sockets disconnected")

        # New sockets with the signed-out cookie or tokens are refused.
        for url in (web_a, web_b):
            for kwargs in ({"cookie": cookie}, {"token": token}, {"token": other}):
                client, refused = open_socket(url, **kwargs)
                assert refused is not None, (url, kwargs)
                assert not client.connected

        # Signing in again works.
        fresh = requests.post(web_b + "/api/v1/session",
                              json={"email": email, "password": PASSWORD}, timeout=30)
        assert fresh.status_code == 200
        client, refused = open_socket(web_a, token=fresh.json()["token"])
        assert refused is None
        client.disconnect()
    finally:
        for c in (by_token, by_cookie, local_token):
            if c.connected:
                c.disconnect()


def test_sign_out_in_the_embedded_mode(cluster):
    web = cluster.web(extra_env={"REDIS_URL": ""}).url
    http, _email, token = sign_up(web)
    cookie = cookie_header(http)
    sock, refused = open_socket(web, token=token)
    assert refused is None
    assert http.delete(web + "/api/v1/session", timeout=10).status_code == 204
    assert requests.get(web + "/api/v1/orders", headers={"Cookie": cookie},
                        timeout=10).status_code == 401
    assert requests.get(web + "/api/v1/orders", headers={"Authorization": f"Bearer {token}"},
                        timeout=10).status_code == 401
    wait_until(lambda: not sock.connected, 5, "socket disconnected")
    _client, refused = open_socket(web, cookie=cookie)
    assert refused is not None
