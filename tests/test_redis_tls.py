"""The app against a Redis like the shipped deployments run it: TLS only (rediss://, the
server's certificate verified against a CA) and an ACL user with a password; the
default user is off. A private redis-server, real web and worker processes, a hold."""
import subprocess
import time
import uuid

import pytest
import redis

from tests.conftest import create_event
from tests.harness import free_port

PASSWORD = "tls-acl-" + uuid.uuid4().hex


def make_certificates(folder):
    """A CA and a server certificate for 127.0.0.1 signed by it (openssl)."""
    def run(*args):
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
        "/CN=boxoffice test CA", "-keyout", "ca.key", "-out", "ca.crt")
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
        "-keyout", "redis.key", "-out", "redis.csr")
    (folder / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    run("x509", "-req", "-in", "redis.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "2", "-extfile", "san.ext", "-out", "redis.crt")
    return folder / "ca.crt"


@pytest.fixture
def tls_redis(tmp_path):
    ca = make_certificates(tmp_path)
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
         "--tls-cert-file", str(tmp_path / "redis.crt"),
         "--tls-key-file", str(tmp_path / "redis.key"),
         "--tls-ca-cert-file", str(ca), "--tls-auth-clients", "no",
         "--user", "default", "off",
         "--user", "boxoffice", "on", f">{PASSWORD}", "~*", "&*", "+@all",
         "--maxmemory-policy", "noeviction", "--save", "", "--appendonly", "no",
         "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = (f"rediss://boxoffice:{PASSWORD}@127.0.0.1:{port}/0"
           f"?ssl_cert_reqs=required&ssl_ca_certs={ca}")
    client = redis.Redis.from_url(url)
    for _ in range(100):
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.05)
    yield url, port, ca
    proc.terminate()
    proc.wait(10)


def test_redis_refuses_plain_and_anonymous_clients(tls_redis):
    url, port, ca = tls_redis
    with pytest.raises(redis.ConnectionError):
        redis.Redis(host="127.0.0.1", port=port, socket_timeout=2).ping()  # no TLS
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(host="127.0.0.1", port=port, ssl=True,
                    ssl_ca_certs=str(ca)).ping()  # the default user is off
    assert redis.Redis.from_url(url).ping()


def test_hold_through_web_and_worker_on_tls_and_acl_redis(tls_redis, cluster, clean_db,
                                                           buyers):
    url, _port, _ca = tls_redis
    env = {"REDIS_URL": url}
    event_id = create_event(clean_db, rows=1, per_row=4)
    cluster.worker(extra_env=env)
    web = cluster.web(extra_env=env)
    buyer = buyers(web.url)
    seats = [s["id"] for s in buyer.join(event_id)["seats"]][:2]
    rid = uuid.uuid4().hex
    ack = buyer.call("hold", {"request_id": rid, "event_id": event_id, "seat_ids": seats})
    assert ack["ok"], ack
    result = buyer.result_for("hold_result", rid)
    assert result["ok"] and result["seat_ids"] == seats
    # The web process's start-up check read the policy over TLS without a warning.
    assert "maxmemory-policy" not in web.log_path.read_text(errors="replace")
