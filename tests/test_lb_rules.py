"""The local cluster's load balancer (its real nginx, rendered by deploy/local/nginx.py)
in front of a real web process: probes and metrics stay inside, HSTS is sent, the
affinity cookie is Secure on TLS. The Docker nginx carries the same rules."""
import re
import signal

import pytest
import requests

from deploy.local import nginx
from tests.harness import free_port
from tests.test_manifests import DOCKER


@pytest.fixture
def lb(cluster, tmp_path):
    web = cluster.web(extra_env={"REDIS_URL": ""})
    port = free_port()
    paths = nginx.Paths(nginx.binary(print), tmp_path / "run")
    (tmp_path / "run" / "logs").mkdir(parents=True)
    nginx.render(paths, port, [int(web.url.rsplit(":", 1)[1])])
    master = nginx.start(paths)
    yield f"http://127.0.0.1:{port}", web.url
    master.signal(signal.SIGQUIT)


def test_probes_and_metrics_are_not_served_through_the_load_balancer(lb):
    url, web = lb
    for path in ("/metrics", "/readyz", "/metrics/", "/readyz?x=1", "//metrics", "/%6detrics"):
        assert requests.get(url + path, timeout=5).status_code == 404, path
    # The web process itself still answers them (the cluster and Prometheus ask it directly).
    assert requests.get(web + "/readyz", timeout=5).status_code == 200
    assert requests.get(web + "/metrics", timeout=5).status_code == 200
    assert requests.get(url + "/healthz", timeout=5).status_code == 200
    assert requests.get(url + "/api/v1/events", timeout=5).status_code == 200


def test_hsts_and_a_secure_affinity_cookie_on_tls(lb):
    url, _web = lb
    for path in ("/", "/static/css/app.css"):
        r = requests.get(url + path, timeout=5)
        assert r.headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"
    polling = "/socket.io/?EIO=4&transport=polling"
    plain = requests.get(url + polling, timeout=5).headers["Set-Cookie"]
    assert "bo_lb=" in plain and "Secure" not in plain  # plain HTTP on this machine
    tls = requests.get(url + polling, headers={"X-Forwarded-Proto": "https"},
                       timeout=5).headers["Set-Cookie"]
    assert re.search(r"bo_lb=[^;]+; Path=/; HttpOnly; SameSite=Lax; Secure", tls), tls


def test_docker_nginx_has_the_same_rules():
    conf = (DOCKER / "nginx.conf").read_text()
    assert "location ~ ^/(metrics|readyz)(/|$) {\n            return 404;" in conf
    assert 'SameSite=Lax$bo_lb_secure" always;' in conf
    assert conf.count("Strict-Transport-Security") >= 4  # server + every add_header location
