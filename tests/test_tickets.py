"""Tickets and the confirmation e-mail, end to end: real web and worker processes,
MariaDB, Redis and a real SMTP server (aiosmtpd) started by the test."""
import requests

from tests.checkout_helpers import audit, rows, scalar
from tests.conftest import SECRET
from tests.tickets_helpers import (Organizer, SmtpServer, auth, buy, get_order, pdf_qr_codes,
                                   wait_for)


def _verify_code(code, keys):
    import base64
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    prefix, kid, body = code.split(".")
    raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    key = next(k for k in keys if k["kid"] == kid)
    pub = Ed25519PublicKey.from_public_bytes(
        base64.urlsafe_b64decode(key["public_key"] + "=" * (-len(key["public_key"]) % 4)))
    pub.verify(raw[18:], f"{prefix}.{kid}.".encode() + raw[:18])  # raises if forged
    return int.from_bytes(raw[:4], "big"), int.from_bytes(raw[4:8], "big")


def test_paid_order_has_a_ticket_per_seat_a_pdf_and_one_email(cluster, clean_db, buyers):
    smtp = SmtpServer().start()
    try:
        env = {"SMTP_URL": smtp.url, "MAIL_FROM": "Boxoffice <tickets@boxoffice.test>",
               "PUBLIC_URL": "https://tickets.example.test"}
        cluster.worker(extra_env=env)
        web = cluster.web(extra_env=env)
        org = Organizer(web.url, clean_db, rows=1, per_row=6, price=4200)
        buyer = buyers(web.url)
        seats = [s["id"] for s in buyer.join(org.event_id)["seats"]]
        order_id = buy(buyer, org.event_id, seats[:3])

        order = get_order(web.url, buyer.token, order_id)
        tickets = order["tickets"]
        assert [t["seat_id"] for t in tickets] == seats[:3]
        assert {t["status"] for t in tickets} == {"valid"}
        assert len({t["code"] for t in tickets}) == 3
        keys = requests.get(f"{web.url}/api/v1/ticket-key", timeout=10).json()["keys"]
        assert keys and keys[0]["alg"] == "Ed25519"
        for t in tickets:
            assert _verify_code(t["code"], keys) == (t["id"], org.event_id)
            assert t["label"] and t["section"] and t["row"] and t["number"] >= 1

        pdf = requests.get(f"{web.url}/api/v1/orders/{order_id}/tickets.pdf",
                           headers=auth(buyer.token), timeout=30)
        assert pdf.status_code == 200 and pdf.headers["Content-Type"] == "application/pdf"
        assert pdf_qr_codes(pdf.content) == [[t["code"]] for t in tickets]
        stranger = buyers(web.url)
        assert requests.get(f"{web.url}/api/v1/orders/{order_id}/tickets.pdf",
                            headers=auth(stranger.token), timeout=10).status_code == 404
        assert requests.get(f"{web.url}/api/v1/orders/{order_id}/tickets.pdf",
                            timeout=10).status_code == 401

        mails = wait_for(lambda: smtp.inbox.orders(), 30)
        msg = mails[0]
        assert msg["To"].addresses[0].addr_spec == scalar(
            clean_db, "SELECT email FROM users WHERE id = :u", u=buyer.user_id)
        assert msg["From"].addresses[0].addr_spec == "tickets@boxoffice.test"
        assert "Your tickets for Night" in msg["Subject"]
        assert msg["Message-ID"].strip() == scalar(
            clean_db, "SELECT message_id FROM mail_outbox WHERE order_id = :o", o=order_id)
        text = msg.get_body(("plain",)).get_content()
        html = msg.get_body(("html",)).get_content()
        for t in tickets:
            assert f"seat {t['number']}" in text
        assert f"https://tickets.example.test/orders/{order_id}" in text
        assert f"https://tickets.example.test/orders/{order_id}" in html
        assert "<table" in html and "126.00 EUR" in html
        parts = {p.get_filename(): p for p in msg.iter_attachments()}
        pdf_part = parts[f"tickets-order-{order_id}.pdf"]
        assert pdf_part.get_content_type() == "application/pdf"
        assert pdf_qr_codes(pdf_part.get_content()) == [[t["code"]] for t in tickets]
        ics = parts[f"event-{org.event_id}.ics"]
        assert ics.get_content_type() == "text/calendar"
        body = ics.get_content()
        assert "BEGIN:VEVENT" in body and "DTSTART:20300601T183000Z" in body

        # Exactly one: nothing more arrives, and the outbox row says sent.
        import time
        time.sleep(2)
        assert len(smtp.inbox.orders()) == 1
        assert rows(clean_db, "SELECT status, attempts FROM mail_outbox"
                              " WHERE order_id IS NOT NULL") == [{"status": "sent", "attempts": 1}]
        # "Send the e-mail again": once a minute; a new message (new Message-ID).
        again = requests.post(f"{web.url}/api/v1/orders/{order_id}/email",
                              headers=auth(buyer.token), timeout=10)
        assert again.status_code == 202, again.text
        soon = requests.post(f"{web.url}/api/v1/orders/{order_id}/email",
                             headers=auth(buyer.token), timeout=10)
        assert soon.status_code == 429 and soon.json()["error"]["code"] == "rate_limited"
        assert requests.post(f"{web.url}/api/v1/orders/{order_id}/email",
                             headers=auth(stranger.token), timeout=10).status_code == 404
        resent = wait_for(lambda: (m := smtp.inbox.orders()) and len(m) == 2 and m, 30)
        assert resent[1]["Message-ID"] != resent[0]["Message-ID"]
        assert "Your tickets for Night" in resent[1]["Subject"]
        ics = requests.get(f"{web.url}/api/v1/events/{org.event_id}/calendar.ics", timeout=10)
        assert ics.status_code == 200 and ics.headers["Content-Type"].startswith("text/calendar")
        assert "SUMMARY:Night" in ics.text
        code, report = audit(clean_db, SECRET)
        assert code == 0, report
        assert report["events"][0]["revenue_cents"] == 3 * 4200
    finally:
        smtp.stop()
