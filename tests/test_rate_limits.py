"""Abuse limits that hold across web instances: per account, per IP, sockets, holds in flight.

Real web processes behind one Redis: a flood through one instance is counted
on the other, REST and sockets draw on one budget, and everyone else is left
alone.
"""
import uuid

import pytest
import requests
import socketio as socketio_client

from booking.ratelimits import client_ip
from tests.conftest import create_event
from tests.harness import Buyer, inside_one_minute


def _release(buyer):
    ack = buyer.call("release", {"request_id": uuid.uuid4().hex, "hold_id": 999_999})
    return ack["error"]["code"]


@pytest.mark.timeout(240)
def test_a_flooding_account_is_limited_on_every_instance_and_rest_others_are_not(
        cluster, make_users):
    """10/minute: the 11th event is rate_limited on the other instance and over REST too."""
    env = {"USER_RATE_LIMIT": "10/minute"}
    a, b = cluster.web(extra_env=env), cluster.web(extra_env=env)
    (flooder, ftok), (calm, ctok) = make_users(2)
    on_a = Buyer(a.url, ftok, flooder).connect()
    on_b = Buyer(b.url, ftok, flooder).connect()
    calm_buyer = Buyer(b.url, ctok, calm).connect()
    try:
        inside_one_minute()
        codes = [_release(on_a) for _ in range(10)]
        assert codes == ["not_found"] * 10
        flooded = on_b.call("release", {"request_id": "x1", "hold_id": 999_999})
        assert flooded["error"]["code"] == "rate_limited"
        assert flooded["error"]["details"]["retry_after_s"] >= 1
        # The same budget covers the REST API: the account is out of calls there too.
        rest = requests.get(b.url + "/api/v1/orders",
                            headers={"Authorization": f"Bearer {ftok}"}, timeout=10)
        assert rest.status_code == 429
        assert rest.json()["error"]["code"] == "rate_limited"
        assert int(rest.headers["Retry-After"]) >= 1
        # Everyone else is unaffected, on sockets and REST.
        assert _release(calm_buyer) == "not_found"
        ok = requests.get(a.url + "/api/v1/orders", headers={"Authorization": f"Bearer {ctok}"},
                          timeout=10)
        assert ok.status_code == 200
        # Probes are never limited.
        assert requests.get(a.url + "/readyz", timeout=10).status_code == 200
    finally:
        for buyer in (on_a, on_b, calm_buyer):
            buyer.close()


@pytest.mark.timeout(240)
def test_a_flooding_address_is_limited_through_the_trusted_proxy_others_are_not(cluster):
    """Per IP (from X-Forwarded-For, as the load balancer sends it): one address, not its neighbours."""
    env = {"IP_RATE_LIMIT": "15/minute"}
    a, b = cluster.web(extra_env=env), cluster.web(extra_env=env)

    def get(web, address):
        return requests.get(web.url + "/api/v1/events",
                            headers={"X-Forwarded-For": f"203.0.113.9, {address}"}, timeout=10)
    inside_one_minute()
    statuses = [get(a if i % 2 else b, "198.51.100.7").status_code for i in range(15)]
    assert statuses == [200] * 15
    flooded = get(a, "198.51.100.7")
    assert flooded.status_code == 429 and flooded.json()["error"]["code"] == "rate_limited"
    assert get(b, "198.51.100.8").status_code == 200


def test_client_ip_trusts_forwarded_for_only_from_trusted_proxies():
    """A client cannot choose its address by sending X-Forwarded-For itself."""
    proxies = ["127.0.0.1", "10.0.0.0/8"]
    direct = {"REMOTE_ADDR": "198.51.100.1", "HTTP_X_FORWARDED_FOR": "1.2.3.4"}
    assert client_ip(direct, proxies) == "198.51.100.1"
    # Through the proxies: the first address from the right that is not a proxy.
    chained = {"REMOTE_ADDR": "127.0.0.1",
               "HTTP_X_FORWARDED_FOR": "1.2.3.4, 198.51.100.2, 10.1.1.1"}
    assert client_ip(chained, proxies) == "198.51.100.2"
    assert client_ip({"REMOTE_ADDR": "127.0.0.1"}, proxies) == "127.0.0.1"
    assert client_ip({"REMOTE_ADDR": "127.0.0.1", "HTTP_X_FORWARDED_FOR": "junk"},
                     proxies) == "127.0.0.1"


@pytest.mark.timeout(240)
def test_sockets_per_account_are_capped_across_instances(cluster, make_users):
    """MAX_SOCKETS_PER_ACCOUNT=2: a third socket anywhere is refused until one closes."""
    env = {"MAX_SOCKETS_PER_ACCOUNT": "2"}
    a, b = cluster.web(extra_env=env), cluster.web(extra_env=env)
    (uid, tok), (other, otok) = make_users(2)
    first = Buyer(a.url, tok, uid).connect()
    second = Buyer(b.url, tok, uid).connect()
    refused = []
    third = socketio_client.Client(reconnection=False)
    third.on("connect_error", lambda data: refused.append(data))
    with pytest.raises(socketio_client.exceptions.ConnectionError):
        third.connect(a.url, auth={"token": tok}, transports=["websocket"], wait_timeout=10)
    assert refused and refused[0]["code"] == "limit_exceeded"
    assert refused[0]["details"] == {"limit": "sockets", "max": 2}
    others = Buyer(b.url, otok, other).connect()  # another account is not affected
    second.close()
    again = Buyer(b.url, tok, uid)
    from tests.harness import wait_until

    def reconnects():
        try:
            again.connect()
            return True
        except socketio_client.exceptions.ConnectionError:
            return False
    wait_until(reconnects, 60, "a socket once another closed", interval=0.3)
    for buyer in (first, again, others):
        buyer.close()


@pytest.mark.timeout(240)
def test_hold_requests_in_flight_count_against_open_holds(cluster, clean_db, make_users):
    """No worker yet: a buyer's third hold request is refused in the ack (MAX_OPEN_HOLDS=2)."""
    web = cluster.web()
    event_id = create_event(clean_db)
    (uid, tok), = make_users(1)
    buyer = Buyer(web.url, tok, uid).connect()
    try:
        seats = [s["id"] for s in buyer.join(event_id)["seats"]]
        acks = [buyer.call("hold", {"request_id": f"h{i}", "event_id": event_id,
                                    "seat_ids": [seats[i]]}) for i in range(3)]
        assert [a["ok"] for a in acks] == [True, True, False]
        assert acks[2]["error"]["code"] == "limit_exceeded"
        assert acks[2]["error"]["details"]["limit"] == "open_holds"
        cluster.worker()
        for i in range(2):
            assert buyer.result_for("hold_result", f"h{i}", timeout=60)["ok"]
        # Answered: they are open holds now, and still two is the most.
        fourth = buyer.call("hold", {"request_id": "h3", "event_id": event_id,
                                     "seat_ids": [seats[3]]})
        assert fourth["error"]["details"]["limit"] == "open_holds"
    finally:
        buyer.close()
