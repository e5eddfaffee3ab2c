"""Orders and attendees of an event as CSV or XLSX, one row per ticket, streamed.

Exports read the orders in pages of PAGE_ORDERS by id (keyset, no OFFSET), end
the read transaction between pages (no connection is held while the bytes
travel), and yield to the web process's other green threads after every page:
a 50,000-order export streams for seconds without holding the process (see
tests/test_exports.py, which measures it). XLSX is written by XlsxWriter in
constant-memory mode to a temporary file on an OS thread (eventlet's thread
pool: writing and zipping are CPU work), then streamed: its first byte comes
once the workbook is complete.
"""
import csv
import io
import os
import tempfile

import sqlalchemy as sa
import xlsxwriter

from .extensions import socketio
from .models import Order, OrderSeat, Payment, Seat, User, iso_utc

PAGE_ORDERS = 500
COLUMNS = ("order_id", "order_status", "ordered_at", "buyer_email", "buyer_name", "seat_id",
           "seat", "section", "row", "number", "tier", "price_cents", "currency",
           "seat_status", "payment_brand", "payment_last4", "payment_reference")


def _pages(session, event_id):
    """Lists of rows (tuples in COLUMNS order), PAGE_ORDERS orders at a time."""
    after = 0
    while True:
        ids = session.scalars(sa.select(Order.id).where(Order.event_id == event_id,
                                                        Order.id > after)
                              .order_by(Order.id).limit(PAGE_ORDERS)).all()
        if not ids:
            return
        after = ids[-1]
        rows = session.execute(
            sa.select(Order.id, Order.status, Order.created_at, User.email, User.name,
                      OrderSeat.seat_id, OrderSeat.label, Seat.section, Seat.row, Seat.number,
                      Seat.tier, OrderSeat.price_cents, Order.currency,
                      sa.case((Seat.order_id == Order.id, "sold"), else_="refunded"),
                      Payment.brand, Payment.last4, Payment.reference)
            .join(User, User.id == Order.user_id)
            .join(OrderSeat, OrderSeat.order_id == Order.id)
            .join(Seat, Seat.id == OrderSeat.seat_id)
            .outerjoin(Payment, Payment.order_id == Order.id)
            .where(Order.id.in_(ids)).order_by(Order.id, OrderSeat.seat_id)).all()
        # End the read: the connection goes back to the pool while this page is sent.
        session.rollback()
        yield [(r[0], r[1], iso_utc(r[2]), *r[3:]) for r in rows]
        socketio.sleep(0)


def _offload(fn, *args):
    """Run CPU-heavy work (writing and zipping a workbook) on an OS thread under eventlet,
    so that the web process's hub keeps serving everyone else meanwhile."""
    if getattr(socketio, "async_mode", None) == "eventlet":
        from eventlet import tpool
        return tpool.execute(fn, *args)
    return fn(*args)


def _safe(value):
    """A cell a spreadsheet will not run as a formula (CSV injection)."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def csv_chunks(session, event_id):
    """The CSV export as byte chunks: a header, then a chunk per page of orders."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(COLUMNS)
    yield buffer.getvalue().encode()
    for page in _pages(session, event_id):
        buffer.seek(0)
        buffer.truncate()
        writer.writerows([[_safe(v) for v in row] for row in page])
        yield buffer.getvalue().encode()


def xlsx_chunks(session, event_id, event_name=""):
    """The XLSX export as byte chunks (built in a temporary file, then sent)."""
    handle, path = tempfile.mkstemp(suffix=".xlsx", prefix="boxoffice-export-")
    os.close(handle)
    try:
        book = xlsxwriter.Workbook(path, {"constant_memory": True,
                                          "strings_to_formulas": False,
                                          "strings_to_urls": False})
        sheet = book.add_worksheet("Tickets")
        bold = book.add_format({"bold": True})
        sheet.write_row(0, 0, COLUMNS, bold)
        sheet.set_column(0, len(COLUMNS) - 1, 16)
        line = 1

        def write(page, first):
            for n, row in enumerate(page):
                sheet.write_row(first + n, 0, row)
        for page in _pages(session, event_id):
            _offload(write, page, line)
            line += len(page)
        book.set_properties({"title": f"Tickets: {event_name}"[:250]})
        _offload(book.close)
        socketio.sleep(0)
        with open(path, "rb") as f:
            while True:
                chunk = f.read(64 * 1024)
                if not chunk:
                    break
                yield chunk
                socketio.sleep(0)
    finally:
        os.unlink(path)
