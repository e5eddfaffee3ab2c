"""Start-up checks, with real processes: a guessable SECRET_KEY stops web, worker and beat;
an evicting Redis is warned about (against a private redis-server of the test's own)."""
import os
import shutil
import subprocess
import sys
import time

import pytest
import redis
import yaml

from tests.harness import ROOT, free_port

PYTHON = sys.executable

COMMANDS = {
    "web": [PYTHON, "wsgi.py", "--host", "127.0.0.1", "--port", "{port}"],
    "worker": [PYTHON, "-m", "celery", "-A", "workers", "worker", "--pool", "solo",
               "--without-gossip", "--without-mingle"],
    "beat": [PYTHON, "-m", "celery", "-A", "workers", "beat", "--schedule", "{tmp}/beat"],
}


def shipped_placeholders():
    """The SECRET_KEY values written in deploy/ (the Kubernetes secret's placeholder)."""
    keys = []
    for doc in yaml.safe_load_all((ROOT / "deploy" / "k8s" / "secret.yaml").read_text()):
        if doc and doc.get("kind") == "Secret":
            keys.append(doc.get("stringData", {})["SECRET_KEY"])
    assert keys
    return keys


def run(role, secret, tmp_path, mysql_url, extra_env=None, timeout=60):
    env = dict(os.environ, SECRET_KEY=secret, DATABASE_URL=mysql_url, PYTHONUNBUFFERED="1",
               **(extra_env or {}))
    env.pop("REDIS_URL", None)
    args = [a.format(port=free_port(), tmp=tmp_path) for a in COMMANDS[role]]
    return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.parametrize("role", ["web", "worker", "beat"])
@pytest.mark.parametrize("secret", ["short-key", "x" * 31] + shipped_placeholders())
def test_guessable_secret_key_refuses_to_start(role, secret, tmp_path, mysql_url):
    out = run(role, secret, tmp_path, mysql_url)
    assert out.returncode != 0
    assert "refusing to start: SECRET_KEY" in out.stderr, out.stderr[-2000:]
    assert "secrets.token_hex(32)" in out.stderr


def test_a_good_secret_key_starts_the_web_process(tmp_path, mysql_url):
    env = dict(os.environ, SECRET_KEY=os.urandom(32).hex(), DATABASE_URL=mysql_url,
               PYTHONUNBUFFERED="1")
    env.pop("REDIS_URL", None)
    port = free_port()
    proc = subprocess.Popen([PYTHON, "wsgi.py", "--host", "127.0.0.1", "--port", str(port)],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        import requests
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).ok:
                    break
            except requests.RequestException:
                pass
            assert proc.poll() is None, proc.stderr.read()
            time.sleep(0.2)
        else:
            pytest.fail("web process did not come up")
    finally:
        proc.terminate()
        proc.wait(15)


@pytest.fixture
def private_redis(tmp_path):
    """A redis-server of this test's own, with maxmemory-policy set by the test."""
    server = shutil.which("redis-server")
    if server is None:
        pytest.fail("redis-server is not installed (make test installs it)")
    procs = []

    def start(policy):
        port = free_port()
        proc = subprocess.Popen([server, "--port", str(port), "--bind", "127.0.0.1",
                                 "--save", "", "--appendonly", "no", "--dir", str(tmp_path),
                                 "--maxmemory-policy", policy],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(proc)
        client = redis.Redis(port=port)
        for _ in range(100):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        return f"redis://127.0.0.1:{port}/0"

    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(10)


WARNING = "maxmemory-policy is 'allkeys-lru', not 'noeviction'"


def test_an_evicting_redis_is_warned_about_at_start(private_redis, tmp_path, mysql_url):
    url = private_redis("allkeys-lru")
    secret = os.urandom(32).hex()
    # A worker or web process would keep running: build the app the way each of
    # them does (create_app), and exit.
    code = "from booking import create_app; create_app(role='worker')"
    env = dict(os.environ, SECRET_KEY=secret, DATABASE_URL=mysql_url, REDIS_URL=url)
    out = subprocess.run([PYTHON, "-c", code], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert WARNING in out.stderr

    quiet = private_redis("noeviction")
    out = subprocess.run([PYTHON, "-c", code], cwd=ROOT, env=dict(env, REDIS_URL=quiet),
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "maxmemory-policy" not in out.stderr
