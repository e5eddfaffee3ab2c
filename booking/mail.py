"""The mail outbox: every e-mail is a row written in the transaction that makes it due.

Sending (deliver_mail, run by the send_mail task after that transaction
commits, never on a request's path):

1. claim: one conditional UPDATE takes a lease on a pending row (lease_token,
   lease_until); a second delivery of the same task, or a second worker,
   finds the row leased or sent and does nothing.
2. build the message and hand it to SMTP (or write the .eml file).
3. mark sent, only under the lease token that was claimed.

A refusal for now (4xx, server down) puts the row back with a later
next_attempt_at (exponential back-off); beat hands due rows to the workers
again (dispatch_due_mail). A 5xx refusal, or MAIL_GIVE_UP_HOURS of trying,
marks it failed, which the audit reports.

What is guaranteed: each row's mail is handed to the SMTP server at least
once while the server can be reached, and never twice unless a worker dies
(or loses the database) in the instant between the server's 250 answer to
DATA and the commit of 'sent'. SMTP cannot take part in our transaction, so
that window cannot be closed; a mail sent again after it carries the same
Message-ID (fixed per row when the row is written), which mail stores and
clients use to drop the copy. A worker killed at any other moment (before or
during the SMTP conversation) leaves a row that is sent once, by the next
worker, after its lease runs out. See docs/MAIL.md.
"""
import json
import logging
import secrets
import uuid
from datetime import timedelta
from email.utils import parseaddr

import sqlalchemy as sa
from flask import current_app

from .errors import RateLimited
from .models import MailOutbox, utcnow

log = logging.getLogger(__name__)

KINDS = ("order_confirmation", "order_resend", "refund", "verify_email", "password_reset")
BACKOFF_MAX_S = 30 * 60
# "Send the e-mail again": one a minute, five a day, per order.
RESEND_PER_DAY = 5


def _message_id(kind):
    domain = parseaddr(current_app.config["MAIL_FROM"])[1].rpartition("@")[2] or "boxoffice"
    return f"<{kind}.{uuid.uuid4().hex}@{domain}>"


def queue_mail(session, *, kind, dedupe_key, to_addr, user_id=None, order_id=None,
               refund_id=None, params=None, now=None):
    """Write an outbox row (or find the one with this dedupe_key); returns it. Never commits."""
    assert kind in KINDS, kind
    existing = session.scalar(sa.select(MailOutbox).where(MailOutbox.dedupe_key == dedupe_key))
    if existing is not None:
        return existing
    row = _outbox_row(kind=kind, dedupe_key=dedupe_key, to_addr=to_addr, user_id=user_id,
                      order_id=order_id, refund_id=refund_id, params=params, now=now)
    session.add(row)
    session.flush()
    return row


def _outbox_row(*, kind, dedupe_key, to_addr, user_id=None, order_id=None, refund_id=None,
                params=None, now=None):
    assert kind in KINDS, kind
    now = now or utcnow()
    return MailOutbox(dedupe_key=dedupe_key, kind=kind, to_addr=to_addr, user_id=user_id,
                      order_id=order_id, refund_id=refund_id, params=json.dumps(params or {}),
                      message_id=_message_id(kind), status="pending", attempts=0,
                      next_attempt_at=now, created_at=now)


def queue_order_confirmations(session, orders):
    """The confirmations of paid orders [(order, to_addr)], one per order whatever happens
    (found by dedupe key, else written): one read and one INSERT for all."""
    keys = {f"order:{order.id}:paid": (order, to_addr) for order, to_addr in orders}
    rows = {row.dedupe_key: row for row in session.scalars(
        sa.select(MailOutbox).where(MailOutbox.dedupe_key.in_(sorted(keys))))}
    for key, (order, to_addr) in keys.items():
        if key not in rows:
            rows[key] = _outbox_row(kind="order_confirmation", dedupe_key=key, to_addr=to_addr,
                                    user_id=order.user_id, order_id=order.id,
                                    now=order.created_at)
            session.add(rows[key])
    session.flush()
    return [rows[f"order:{order.id}:paid"] for order, _to in orders]


def queue_resend(session, order, to_addr, now=None):
    """The buyer's "send the e-mail again". Raises RateLimited past one a minute or five a day."""
    now = now or utcnow()
    sent_today = session.scalar(sa.select(sa.func.count()).select_from(MailOutbox).where(
        MailOutbox.order_id == order.id, MailOutbox.kind == "order_resend",
        MailOutbox.created_at > now - timedelta(days=1)))
    if sent_today >= RESEND_PER_DAY:
        raise RateLimited("The e-mail was sent again five times today; try tomorrow.",
                          retry_after_s=3600)
    minute = int(now.timestamp() // 60)
    key = f"order:{order.id}:resend:{minute}"
    if session.scalar(sa.select(MailOutbox.id).where(MailOutbox.dedupe_key == key)):
        raise RateLimited("The e-mail was just sent again; wait a minute.",
                          retry_after_s=60 - int(now.timestamp()) % 60)
    return queue_mail(session, kind="order_resend", dedupe_key=key, to_addr=to_addr,
                      user_id=order.user_id, order_id=order.id, now=now)


def claim_mail(session, outbox_id, lease_s, now=None):
    """Take the lease on a pending row that is due; returns the lease token or None."""
    now = now or utcnow()
    token = secrets.token_hex(16)
    result = session.execute(sa.update(MailOutbox).where(
        MailOutbox.id == outbox_id, MailOutbox.status == "pending",
        MailOutbox.next_attempt_at <= now,
        sa.or_(MailOutbox.lease_until.is_(None), MailOutbox.lease_until < now))
        .values(lease_token=token, lease_until=now + timedelta(seconds=lease_s),
                attempts=MailOutbox.attempts + 1))
    return token if result.rowcount == 1 else None


def mark_sent(session, outbox_id, token, now=None):
    """Record the mail as sent, if this lease still owns it; returns whether it did."""
    result = session.execute(sa.update(MailOutbox).where(
        MailOutbox.id == outbox_id, MailOutbox.lease_token == token,
        MailOutbox.status == "pending")
        .values(status="sent", sent_at=now or utcnow(), lease_token=None, lease_until=None,
                last_error=None))
    return result.rowcount == 1


def defer_mail(session, outbox_id, token, error, give_up_after_s, backoff_first_s=15.0,
               now=None):
    """Try again later (exponential back-off), or fail once it has been tried too long."""
    now = now or utcnow()
    row = session.get(MailOutbox, outbox_id)
    if row is None or row.lease_token != token or row.status != "pending":
        return None
    row.lease_token, row.lease_until, row.last_error = None, None, error[:500]
    if (now - row.created_at).total_seconds() > give_up_after_s:
        row.status = "failed"
        return "failed"
    delay = min(BACKOFF_MAX_S, backoff_first_s * 2 ** max(0, row.attempts - 1))
    row.next_attempt_at = now + timedelta(seconds=delay)
    return "deferred"


def fail_mail(session, outbox_id, token, error):
    """The server refused the mail for good."""
    session.execute(sa.update(MailOutbox).where(
        MailOutbox.id == outbox_id, MailOutbox.lease_token == token,
        MailOutbox.status == "pending")
        .values(status="failed", last_error=error[:500], lease_token=None, lease_until=None))


def due_mail_ids(session, now=None, limit=200):
    """Pending rows whose next attempt is due and that no live lease holds."""
    now = now or utcnow()
    return list(session.scalars(sa.select(MailOutbox.id).where(
        MailOutbox.status == "pending", MailOutbox.next_attempt_at <= now,
        sa.or_(MailOutbox.lease_until.is_(None), MailOutbox.lease_until < now))
        .order_by(MailOutbox.next_attempt_at).limit(limit)))


def deliver_mail(outbox_id, transport):
    """Claim, build, send and mark one outbox row; returns sent|skipped|deferred|failed.

    Runs in an app context (a task). Raises DatabaseUnavailable when the
    database cannot be reached (the row stays pending; its lease runs out).
    """
    from .mail_messages import build_message
    from .transactions import run_transaction
    cfg = current_app.config
    token = run_transaction(lambda s: claim_mail(s, outbox_id, cfg["MAIL_LEASE_SECONDS"]))
    if token is None:
        return "skipped"
    give_up = cfg["MAIL_GIVE_UP_HOURS"] * 3600
    first = cfg["MAIL_BACKOFF_FIRST_SECONDS"]
    try:
        message = run_transaction(lambda s: build_message(s, outbox_id))
    except Exception as err:
        log.exception("could not build mail %s", outbox_id)
        why = f"build: {err}"
        run_transaction(lambda s: defer_mail(s, outbox_id, token, why, give_up, first))
        return "deferred"
    from .mail_transport import PermanentMailError, TransientMailError
    try:
        transport.send(message, f"{outbox_id:08d}")
    except TransientMailError as err:
        log.warning("mail %s not sent (%s); will retry", outbox_id, err)
        why = str(err)
        return run_transaction(lambda s: defer_mail(s, outbox_id, token, why, give_up, first))
    except PermanentMailError as err:
        log.error("mail %s refused for good: %s", outbox_id, err)
        why = str(err)
        run_transaction(lambda s: fail_mail(s, outbox_id, token, why))
        return "failed"
    if not run_transaction(lambda s: mark_sent(s, outbox_id, token)):
        log.warning("mail %s sent but its lease had passed to another worker", outbox_id)
    return "sent"


def unsent_problems(session, older_than_s, now=None):
    """Audit: mails failed, or pending longer than older_than_s."""
    now = now or utcnow()
    rows = session.execute(sa.select(MailOutbox.id, MailOutbox.kind, MailOutbox.status,
                                     MailOutbox.order_id, MailOutbox.created_at,
                                     MailOutbox.last_error).where(
        sa.or_(MailOutbox.status == "failed",
               sa.and_(MailOutbox.status == "pending",
                       MailOutbox.created_at < now - timedelta(seconds=older_than_s)))))
    return [{"kind": "mail_not_sent", "outbox_id": r.id, "mail": r.kind, "status": r.status,
             "order_id": r.order_id, "since": r.created_at.isoformat() + "Z",
             "last_error": r.last_error} for r in rows]
