"""Sign-up verification and password reset e-mails: signed, time-limited, single-use links.
The app in the one-process mode on MariaDB; mails land as .eml files (SMTP_URL unset)."""
import email
import email.policy
import re
import time
from datetime import timedelta

import pytest

from booking.models import utcnow

PASSWORD = "correct-horse-battery"


def _mails(folder, n, timeout=15):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        files = sorted(folder.glob("*.eml"))
        if len(files) >= n:
            return [email.message_from_bytes(f.read_bytes(), policy=email.policy.default)
                    for f in files]
        time.sleep(0.1)
    raise AssertionError(f"expected {n} mails in {folder}")


def _link(msg, path):
    text = msg.get_body(("plain",)).get_content()
    found = re.search(rf"https?://\S+(/{path}/\S+)", text)
    assert found, text
    assert found.group(1) in msg.get_body(("html",)).get_content()
    return found.group(1)


@pytest.fixture
def outbox(tmp_path):
    return tmp_path / "outbox"


@pytest.mark.app_config(WTF_CSRF_ENABLED=False)
def test_signup_verification_and_password_reset(app, client, outbox):
    app.config["MAIL_OUTBOX_DIR"] = str(outbox)
    r = client.post("/api/v1/users", json={"email": "Ada@Example.test", "password": PASSWORD})
    assert r.status_code == 201
    [verify] = _mails(outbox, 1)
    assert verify["To"] == "ada@example.test" and "Confirm" in verify["Subject"]
    link = _link(verify, "verify-email")
    page = client.get(link)
    assert page.status_code == 200 and b"is confirmed" in page.data
    again = client.get(link)
    assert b"does not work" in again.data  # single use
    forged = client.get(link[:-3] + "abc")
    assert b"does not work" in forged.data

    # Forgot password: the same answer for an unknown address, and no mail for it.
    client.post("/forgot-password", data={"email": "nobody@example.test"})
    r = client.post("/forgot-password", data={"email": "ada@example.test"})
    assert r.status_code == 302
    mails = _mails(outbox, 2)
    assert len(mails) == 2
    reset = _link(mails[1], "reset-password")
    assert client.get(reset).status_code == 200
    weak = client.post(reset, data={"password": "short", "confirm": "short"})
    assert b"at least 10" in weak.data
    r = client.post(reset, data={"password": "a-brand-new-secret", "confirm": "a-brand-new-secret"})
    assert r.status_code == 302 and r.headers["Location"].endswith("/login")
    assert client.post("/api/v1/session", json={"email": "ada@example.test",
                                                "password": PASSWORD}).status_code == 401
    assert client.post("/api/v1/session", json={"email": "ada@example.test",
                                                "password": "a-brand-new-secret"}).status_code == 200
    used = client.post(reset, data={"password": "another-secret-1", "confirm": "another-secret-1"})
    assert b"does not work" in used.data


def test_links_expire(app):
    from booking import account_links
    from booking.extensions import db
    from booking.models import User
    with app.app_context():
        user = User(email="late@example.test", name="", password_hash="x")
        db.session.add(user)
        db.session.flush()
        account_links.queue_password_reset(db.session, "late@example.test")
        db.session.commit()
        from booking.models import MailOutbox
        import json
        token = json.loads(db.session.query(MailOutbox).one().params)["token"]
        later = utcnow() + timedelta(minutes=61)
        with pytest.raises(account_links.LinkInvalid):
            account_links.reset_password(db.session, token, "a-brand-new-secret", now=later)
        account_links.reset_password(db.session, token, "a-brand-new-secret")
        db.session.commit()
