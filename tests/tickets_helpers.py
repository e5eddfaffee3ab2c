"""Shared steps of the after-sale tests: a real SMTP server, organizers, buying, QR decoding."""
import email
import email.policy
import io
import threading
import time
import uuid

import pypdfium2
import requests
import zxingcpp
from aiosmtpd.controller import Controller

from tests.checkout_helpers import hold, pay
from tests.conftest import ops_command
from tests.harness import free_port, sign_up


class Inbox:
    """An aiosmtpd handler that keeps every message it accepted.

    stall_rcpt_s: wait that long before answering RCPT (a worker can be killed
    mid-conversation); refuse: answer DATA with 451 (the server refuses for now).
    """

    def __init__(self):
        self.messages = []
        self.lock = threading.Lock()
        self.stall_rcpt_s = 0.0
        self.refuse = False
        self.rcpts = 0

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        import asyncio
        self.rcpts += 1
        if self.stall_rcpt_s:
            await asyncio.sleep(self.stall_rcpt_s)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.refuse:
            return "451 Try again later"
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self.lock:
            self.messages.append(msg)
        return "250 Message accepted for delivery"

    def received(self):
        with self.lock:
            return list(self.messages)

    def orders(self):
        """The e-mails about orders (sign-ups also get an address verification e-mail)."""
        return [m for m in self.received() if m["Subject"] != "Confirm your e-mail address"]


class SmtpServer:
    def __init__(self):
        self.inbox = Inbox()
        self.port = free_port()
        self.controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port)

    @property
    def url(self):
        return f"smtp://127.0.0.1:{self.port}"

    def start(self):
        self.controller.start()
        return self

    def stop(self):
        self.controller.stop()


def flask_cli(db_url, *args):
    """An ops command's last line of output (conftest.ops_command)."""
    out = ops_command(db_url, *args).strip()
    return out.splitlines()[-1] if out else ""


class Organizer:
    """An organizer with an admin and a door staff member, and one event of theirs."""

    def __init__(self, base_url, db_url, rows=2, per_row=5, price=3000, name=None):
        tag = uuid.uuid4().hex[:8]
        self.admin_email, self.staff_email = f"admin-{tag}@example.test", f"door-{tag}@example.test"
        self.admin_id, self.admin_token = sign_up(base_url, self.admin_email)
        self.staff_id, self.staff_token = sign_up(base_url, self.staff_email)
        self.id = int(flask_cli(db_url, "booking", "organizer", "create", "--name",
                                name or f"Org {tag}", "--admin-email", self.admin_email))
        flask_cli(db_url, "booking", "organizer", "add-member", "--organizer", str(self.id),
                  "--email", self.staff_email, "--role", "staff")
        self.event_id = int(flask_cli(
            db_url, "booking", "create-event", "--name", f"Night {tag}", "--venue",
            f"Hall {tag}", "--starts-at", "2030-06-01T18:30:00Z", "--rows", str(rows),
            "--seats-per-row", str(per_row), "--price-cents", str(price),
            "--organizer", str(self.id)))


def auth(token):
    return {"Authorization": f"Bearer {token}"}


def buy(buyer, event_id, seat_ids):
    """Hold and pay seats with the approving card; returns the order id."""
    held = hold(buyer, event_id, seat_ids)
    assert held["ok"], held
    _ack, result = pay(buyer, held["hold_id"])
    assert result["ok"], result
    return result["order_id"]


def get_order(base_url, token, order_id):
    r = requests.get(f"{base_url}/api/v1/orders/{order_id}", headers=auth(token), timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def pdf_qr_codes(pdf_bytes, scale=3):
    """The text of the QR code on each page of a PDF, rendered with PDFium, decoded with zxing-cpp."""
    doc = pypdfium2.PdfDocument(pdf_bytes)
    found = []
    for page in doc:
        image = page.render(scale=scale).to_pil()
        codes = [r.text for r in zxingcpp.read_barcodes(image)
                 if r.format == zxingcpp.BarcodeFormat.QRCode]
        found.append(codes)
    doc.close()
    return found


def pdf_page_png(pdf_bytes, path, page=0, scale=1.5):
    doc = pypdfium2.PdfDocument(pdf_bytes)
    doc[page].render(scale=scale).to_pil().save(path)
    doc.close()


def wait_for(predicate, timeout=30, interval=0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("timed out")


__all__ = ["SmtpServer", "Organizer", "buy", "get_order", "pdf_qr_codes", "pdf_page_png",
           "auth", "wait_for", "flask_cli", "io"]
