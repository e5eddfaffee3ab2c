"""What each e-mail says: HTML and plain text from templates/mail/, with attachments.

Order e-mails (confirmation, sent again, refund) carry the tickets PDF and the
event's .ics; refunded tickets show as void in both bodies and in the PDF.
"""
import json
from datetime import timezone
from email.message import EmailMessage
from email.utils import formatdate
from urllib.parse import urlsplit

from flask import current_app

from .calendar import event_ics
from .models import MailOutbox, Refund, User
from .ticket_pdf import money, render_tickets_pdf
from .tickets import local_time, order_documents

SUBJECTS = {
    "order_confirmation": "Your tickets for {event}",
    "order_resend": "Your tickets for {event}",
    "refund": "Refund for your order #{order} ({event})",
    "verify_email": "Confirm your e-mail address",
    "password_reset": "Reset your Boxoffice password",
}


def _order_context(session, row):
    order, event, buyer, tickets = order_documents(session, row.order_id)
    base = current_app.config["PUBLIC_URL"]
    when = local_time(event.starts_at, event.venue.timezone)
    refund = session.get(Refund, row.refund_id) if row.refund_id else None
    return {
        "order": order, "event": event, "buyer": buyer, "tickets": tickets,
        "when": when.strftime("%A %d %B %Y, %H:%M ") + (when.tzname() or ""),
        "order_url": f"{base}/orders/{order.id}", "refund": refund,
        "money": money, "valid_count": sum(1 for t in tickets if t.status != "void"),
    }


def _render(name, context):
    # Straight from the Jinja environment: the pages' context processors need a
    # request (a CSRF token), and a mail is built in a worker, outside any request.
    return current_app.jinja_env.get_template(name).render(**context)


def build_message(session, outbox_id):
    """The EmailMessage of an outbox row (read-only)."""
    row = session.get(MailOutbox, outbox_id)
    cfg = current_app.config
    msg = EmailMessage()
    msg["From"] = cfg["MAIL_FROM"]
    msg["To"] = row.to_addr
    msg["Message-ID"] = row.message_id
    msg["Date"] = formatdate(row.created_at.replace(tzinfo=timezone.utc).timestamp(),
                             usegmt=True)
    msg["Auto-Submitted"] = "auto-generated"
    context = {"base_url": cfg["PUBLIC_URL"], "kind": row.kind,
               "params": json.loads(row.params or "{}")}
    attachments = []
    if row.order_id is not None:
        context.update(_order_context(session, row))
        subject = SUBJECTS[row.kind].format(event=context["event"].name,
                                            order=context["order"].id)
        pdf = render_tickets_pdf(context["order"], context["event"], context["buyer"],
                                 context["tickets"])
        attachments.append((pdf, "application", "pdf", f"tickets-order-{context['order'].id}.pdf"))
        host = urlsplit(cfg["PUBLIC_URL"]).hostname or "boxoffice"
        ics = event_ics(context["event"], context["order_url"], host)
        attachments.append((ics, "text", "calendar", f"event-{context['event'].id}.ics"))
        template = "refund" if row.kind == "refund" else "order"
    else:
        context["user"] = session.get(User, row.user_id)
        subject = SUBJECTS[row.kind]
        template = row.kind
    msg["Subject"] = subject
    msg.set_content(_render(f"mail/{template}.txt", context))
    msg.add_alternative(_render(f"mail/{template}.html", context), subtype="html")
    for data, maintype, subtype, filename in attachments:
        if maintype == "text":
            msg.add_attachment(data.decode(), subtype=subtype, filename=filename,
                               params={"method": "PUBLISH"})
        else:
            msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
    return msg
