"""The embedded mode: one `python wsgi.py` process on SQLite, no Redis, tasks in-process.

This is what `make run` serves, so it is tested as a real process with real
clients: schema from `flask db upgrade`, an event from `booking create-event`,
sign-up over REST, and a python-socketio client holding and releasing seats.
"""
import os
import uuid

import pytest
import requests
import sqlalchemy as sa

from booking.extensions import db
from tests.conftest import SECRET, create_event, migrate
from tests.harness import (PYTHON, Buyer, Proc, connect_refusals, free_port, sign_up,
                           wait_until)

PRICE = 3100


def _embedded_env(url):
    """The environment of `make run`: a SQLite URL, no Redis at all."""
    env = dict(os.environ, DATABASE_URL=url, SECRET_KEY=SECRET, PYTHONUNBUFFERED="1",
               LOG_LEVEL="INFO")
    for name in ("REDIS_URL", "REDIS_NAMESPACE", "CELERY_QUEUE", "PROMETHEUS_MULTIPROC_DIR"):
        env.pop(name, None)
    return env


def test_db_upgrade_on_an_empty_sqlite_file(tmp_path):
    """`flask db upgrade` creates the SQLite file and every table of the model."""
    path = tmp_path / "fresh" / "booking.db"
    path.parent.mkdir()
    migrate(f"sqlite:///{path}")
    assert path.exists()
    engine = sa.create_engine(f"sqlite:///{path}")
    tables = set(sa.inspect(engine).get_table_names())
    engine.dispose()
    assert {t.name for t in db.metadata.sorted_tables} <= tables


@pytest.fixture(scope="module")
def embedded(tmp_path_factory):
    """A migrated SQLite file with one 4-seat event, served by one real wsgi.py process.

    Shared by the module's tests (one server start, not one per test); only the
    hold test changes seats.
    """
    tmp_path = tmp_path_factory.mktemp("embedded")
    url = f"sqlite:///{tmp_path / 'booking.db'}"
    migrate(url)
    event_id = create_event(url, rows=1, per_row=4, price=PRICE, name="Embedded night")
    port = free_port()
    proc = Proc.spawn("embedded", [PYTHON, "wsgi.py", "--port", str(port)], _embedded_env(url),
                tmp_path)
    proc.url = f"http://127.0.0.1:{port}"
    proc.db_url = url
    proc.event_id = event_id

    def ready():
        try:
            return requests.get(proc.url + "/readyz", timeout=1).status_code == 200
        except requests.RequestException:
            return False
    try:
        wait_until(ready, 30, "embedded server ready", proc)
        yield proc
    finally:
        proc.stop()


def test_hold_and_release_in_one_process(embedded):
    """Sign up, connect with the token, join, hold two seats, see them held, release, see them free."""
    base, event_id = embedded.url, embedded.event_id
    uid, token = sign_up(base)
    buyer = Buyer(base, token, uid).connect()
    watcher = Buyer(base, sign_up(base)[1]).connect()
    try:
        snapshot = buyer.join(event_id)["seats"]
        watcher.join(event_id)
        assert [s["status"] for s in snapshot] == ["available"] * 4
        seat_ids = [s["id"] for s in snapshot][:2]

        rid = uuid.uuid4().hex
        ack = buyer.call("hold", {"request_id": rid, "event_id": event_id, "seat_ids": seat_ids})
        assert ack == {"ok": True, "request_id": rid, "queued": True}
        held = buyer.result_for("hold_result", rid)
        assert held["ok"], held
        assert held["seat_ids"] == seat_ids and held["event_id"] == event_id
        assert held["amount_cents"] == 2 * PRICE and held["currency"] == "EUR"
        assert held["expires_at"].endswith("Z")

        # Everyone watching sees the seats held, the buyer included.
        for client in (buyer, watcher):
            wait_until(lambda: all(client.seat_versions.get(s) == (1, "held") for s in seat_ids),
                       30, "seats_changed: held")

        rel = uuid.uuid4().hex
        ack = buyer.call("release", {"request_id": rel, "hold_id": held["hold_id"]})
        assert ack == {"ok": True, "request_id": rel, "queued": True}
        released = buyer.result_for("release_result", rel)
        assert released == {"request_id": rel, "ok": True, "hold_id": held["hold_id"]}
        for client in (buyer, watcher):
            wait_until(lambda: all(client.seat_versions.get(s) == (2, "available")
                                   for s in seat_ids), 10, "seats_changed: available again")
    finally:
        buyer.close()
        watcher.close()

    seats = requests.get(f"{base}/api/v1/events/{event_id}/seats", timeout=10).json()["seats"]
    assert [(s["status"], s["version"]) for s in seats] == [("available", 2)] * 2 + [
        ("available", 0)] * 2


@pytest.mark.parametrize("path", [
    "/api/v1/events/424242",
    "/api/v1/events/2147483648",
    "/api/v1/events/99999999999999999999",
    "/api/v1/events/9223372036854775808/seats",
])
def test_unknown_event_ids_on_sqlite_are_404(embedded, path):
    """Ids no INT column holds are unknown events, not a SQLite overflow (500)."""
    r = requests.get(embedded.url + path, timeout=10)
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "not_found"


def test_passwords_are_stored_as_argon2id(embedded):
    """The embedded database holds an Argon2id hash, never the password."""
    email = f"hash-{uuid.uuid4().hex[:8]}@example.test"
    sign_up(embedded.url, email=email, password="embedded-secret-phrase")
    engine = sa.create_engine(embedded.db_url)
    with engine.connect() as conn:
        stored = conn.scalar(sa.text("SELECT password_hash FROM users WHERE email = :e"),
                             {"e": email})
    engine.dispose()
    assert stored.startswith("$argon2id$")
    assert "embedded-secret-phrase" not in stored


@pytest.mark.parametrize("auth", [{"token": "forged.token.value"}, {"token": ""}],
                         ids=["forged", "empty"])
def test_socket_without_a_valid_token_is_refused(embedded, auth):
    """A forged or empty token never opens a socket; the client gets one connect_error.
    (No credentials at all is a signed-out visitor's read-only socket:
    tests/test_buyer_view.py.)"""
    assert len(connect_refusals(embedded.url, auth)) == 1


def test_refusal_data_is_the_contract_error(embedded):
    """API.md: the refusal's data is the error object {code: 'unauthorized', message}."""
    [refusal] = connect_refusals(embedded.url, {"token": "forged.token.value"})
    assert refusal["code"] == "unauthorized"
    assert isinstance(refusal["message"], str) and refusal["message"]
    # The same object under `data`: what the JavaScript client reads as err.data.
    assert refusal["data"] == {k: refusal[k] for k in ("code", "message", "details")}


def test_socket_with_a_valid_token_connects(embedded):
    """The token from sign-up opens a socket on the real server."""
    uid, token = sign_up(embedded.url)
    buyer = Buyer(embedded.url, token, uid).connect()
    try:
        assert buyer.sio.connected
    finally:
        buyer.close()
