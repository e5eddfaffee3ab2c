"""Tight limits on signing in and up, per email and per client IP, shared by every web
process through Redis (real processes), and in the embedded mode (in-process)."""
import re
import uuid

import requests

from tests.harness import inside_one_minute

PASSWORD = "correct-horse-battery"
LIMITS = {"LOGIN_EMAIL_RATE_LIMIT": "3/minute", "LOGIN_IP_RATE_LIMIT": "8/minute"}


def login(url, email, password="wrong-password-123", forwarded=None):
    headers = {"X-Forwarded-For": forwarded} if forwarded else {}
    return requests.post(url + "/api/v1/session", json={"email": email, "password": password},
                         headers=headers, timeout=30)


def assert_limited(r, limit):
    assert r.status_code == 429, r.text
    error = r.json()["error"]
    assert error["code"] == "rate_limited"
    assert error["details"]["limit"] == limit
    assert 1 <= error["details"]["retry_after_s"] <= 60


def test_per_email_and_per_ip_across_two_web_processes(cluster):
    a, b = cluster.web(extra_env=LIMITS).url, cluster.web(extra_env=LIMITS).url
    victim = f"victim-{uuid.uuid4().hex[:8]}@example.test"
    inside_one_minute()
    assert requests.post(a + "/api/v1/users", json={"email": victim, "password": PASSWORD},
                         timeout=30).status_code == 201  # attempt 1 of 3 for this email
    # Guesses at one email, alternating processes, from different client IPs
    # (127.0.0.1 is a trusted proxy, so X-Forwarded-For names the client).
    assert login(a, victim, forwarded="198.51.100.1").status_code == 401
    assert login(b, victim, forwarded="198.51.100.2").status_code == 401
    assert_limited(login(a, victim, forwarded="198.51.100.3"), "email")
    # Even the right password waits: the email's budget is spent.
    assert_limited(login(b, victim, password=PASSWORD, forwarded="198.51.100.4"), "email")
    # Another email is not affected.
    other = f"other-{uuid.uuid4().hex[:8]}@example.test"
    assert login(b, other, forwarded="198.51.100.5").status_code == 401

    # One IP spraying many emails: 8 attempts a minute, across both processes.
    spray = "203.0.113.9"
    codes = [login((a, b)[i % 2], f"s{i}-{uuid.uuid4().hex[:6]}@example.test",
                   forwarded=spray).status_code for i in range(8)]
    assert codes == [401] * 8
    assert_limited(login(b, f"late-{uuid.uuid4().hex[:6]}@example.test", forwarded=spray), "ip")
    # Sign-up from that IP draws on the same budget.
    r = requests.post(a + "/api/v1/users", headers={"X-Forwarded-For": spray},
                      json={"email": f"new-{uuid.uuid4().hex[:6]}@example.test",
                            "password": PASSWORD}, timeout=30)
    assert_limited(r, "ip")


def test_login_and_signup_pages_are_limited_in_the_embedded_mode(cluster):
    web = cluster.web(extra_env={"REDIS_URL": "", **LIMITS}).url
    http = requests.Session()
    email = f"page-{uuid.uuid4().hex[:8]}@example.test"

    def csrf(path):
        page = http.get(web + path, timeout=10).text
        return re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)

    statuses = []
    inside_one_minute()
    for _ in range(3):
        r = http.post(web + "/login", data={"csrf_token": csrf("/login"), "email": email,
                                            "password": "wrong-password-123"}, timeout=30)
        statuses.append(r.status_code)
    assert statuses == [200, 200, 200]
    r = http.post(web + "/login", data={"csrf_token": csrf("/login"), "email": email,
                                        "password": "wrong-password-123"}, timeout=30)
    assert r.status_code == 429
    assert re.search(r"Too many attempts\. Try again in \d+ seconds\.", r.text)
    r = http.post(web + "/signup", data={"csrf_token": csrf("/signup"), "email": email,
                                         "password": PASSWORD, "confirm": PASSWORD},
                  timeout=30)
    assert r.status_code == 429
    assert "Too many attempts." in r.text
    # The REST API shares the budget with the pages (same process, same counters).
    assert_limited(login(web, email), "email")
