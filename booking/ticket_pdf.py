"""The tickets PDF: one A4 page per ticket, drawn with reportlab, QR codes by segno.

The QR code is drawn as vector squares from segno's module matrix (no bitmap),
so it stays sharp at any zoom and on any printer. Why reportlab rather than
WeasyPrint: docs/TICKETS.md.
"""
import io

import segno
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.units import mm
from reportlab.pdfgen import canvas

from .tickets import local_time

QR_SIZE = 70 * mm
INK = colors.HexColor("#1b1f24")
MUTED = colors.HexColor("#5c636a")
ACCENT = colors.HexColor("#0d6efd")


def money(cents, currency):
    return f"{cents / 100:,.2f} {currency}"


def draw_qr(pdf, text, x, y, size):
    """A QR code of text as filled squares, its quiet zone included, bottom-left at (x, y)."""
    qr = segno.make(text, error="m", micro=False)
    rows = [list(r) for r in qr.matrix_iter(scale=1, border=4)]
    module = size / len(rows)
    pdf.setFillColor(colors.white)
    pdf.rect(x, y, size, size, stroke=0, fill=1)
    pdf.setFillColor(colors.black)
    for r, row in enumerate(rows):
        c = 0
        while c < len(row):
            if row[c]:
                start = c
                while c < len(row) and row[c]:
                    c += 1
                # One rectangle per run of dark modules, overlapping by a hair so
                # that renderers leave no seams between them.
                pdf.rect(x + start * module, y + size - (r + 1) * module,
                         (c - start) * module + 0.01, module + 0.01, stroke=0, fill=1)
            else:
                c += 1


def _label(pdf, x, y, title, value, size=16):
    pdf.setFillColor(MUTED)
    pdf.setFont("Helvetica", 9)
    pdf.drawString(x, y, title.upper())
    pdf.setFillColor(INK)
    pdf.setFont("Helvetica-Bold", size)
    pdf.drawString(x, y - size - 2, str(value))


def _fit(pdf, text, font, size, width):
    """The text cut with an ellipsis to fit width (reportlab does not wrap drawString)."""
    if pdf.stringWidth(text, font, size) <= width:
        return text
    while text and pdf.stringWidth(text + "…", font, size) > width:
        text = text[:-1]
    return text + "…"


def render_tickets_pdf(order, event, buyer, tickets):
    """The PDF bytes: a page per ticket; a void ticket's page says VOID and has no QR code."""
    buf = io.BytesIO()
    pdf = canvas.Canvas(buf, pagesize=A4, pageCompression=1)
    pdf.setTitle(f"Tickets - {event.name} - order {order.id}")
    pdf.setAuthor("Boxoffice")
    width, height = A4
    margin = 20 * mm
    when = local_time(event.starts_at, event.venue.timezone)
    for index, ticket in enumerate(tickets, start=1):
        seat = ticket.seat
        pdf.setFillColor(ACCENT)
        pdf.rect(0, height - 14 * mm, width, 14 * mm, stroke=0, fill=1)
        pdf.setFillColor(colors.white)
        pdf.setFont("Helvetica-Bold", 12)
        pdf.drawString(margin, height - 9 * mm, "BOXOFFICE  ·  TICKET")
        pdf.drawRightString(width - margin, height - 9 * mm, f"{index} of {len(tickets)}")

        top = height - 34 * mm
        pdf.setFillColor(INK)
        pdf.setFont("Helvetica-Bold", 24)
        pdf.drawString(margin, top, _fit(pdf, event.name, "Helvetica-Bold", 24,
                                         width - 2 * margin))
        pdf.setFont("Helvetica", 13)
        pdf.setFillColor(MUTED)
        pdf.drawString(margin, top - 9 * mm, _fit(pdf, event.venue.name, "Helvetica", 13,
                                                  width - 2 * margin))
        pdf.setFillColor(INK)
        pdf.setFont("Helvetica-Bold", 14)
        pdf.drawString(margin, top - 17 * mm,
                       when.strftime("%A %d %B %Y, %H:%M ") + (when.tzname() or ""))
        pdf.setFont("Helvetica", 9)
        pdf.setFillColor(MUTED)
        pdf.drawString(margin, top - 22 * mm, f"Time at the venue ({event.venue.timezone})")

        row_y = top - 40 * mm
        col = (width - 2 * margin) / 3
        _label(pdf, margin, row_y, "Section", seat.section, 22)
        _label(pdf, margin + col, row_y, "Row", seat.row, 22)
        _label(pdf, margin + 2 * col, row_y, "Seat", seat.number, 22)

        info_y = row_y - 22 * mm
        _label(pdf, margin, info_y, "Price", money(ticket.price_cents, order.currency), 13)
        _label(pdf, margin + col, info_y, "Order number", f"#{order.id}", 13)
        _label(pdf, margin + 2 * col, info_y, "Ticket", f"#{ticket.id}", 13)
        _label(pdf, margin, info_y - 16 * mm, "Name",
               _fit(pdf, buyer.name or buyer.email, "Helvetica-Bold", 13, width - 2 * margin), 13)

        qr_y = info_y - 30 * mm - QR_SIZE
        qr_x = (width - QR_SIZE) / 2
        if ticket.status == "void":
            pdf.setStrokeColor(colors.HexColor("#b02a37"))
            pdf.setFillColor(colors.HexColor("#b02a37"))
            pdf.setLineWidth(3)
            pdf.rect(qr_x, qr_y, QR_SIZE, QR_SIZE, stroke=1, fill=0)
            pdf.setFont("Helvetica-Bold", 40)
            pdf.drawCentredString(width / 2, qr_y + QR_SIZE / 2 - 14, "VOID")
            pdf.setFont("Helvetica", 11)
            pdf.drawCentredString(width / 2, qr_y - 8 * mm,
                                  "This ticket was refunded and no longer admits anyone.")
        else:
            draw_qr(pdf, ticket.code, qr_x, qr_y, QR_SIZE)
            pdf.setFillColor(MUTED)
            pdf.setFont("Helvetica", 10)
            pdf.drawCentredString(width / 2, qr_y - 7 * mm,
                                  "Show this code at the door. One scan lets one person in.")
        pdf.setFont("Helvetica", 8)
        pdf.setFillColor(MUTED)
        pdf.drawCentredString(width / 2, 12 * mm,
                              f"Order #{order.id} · ticket #{ticket.id} · seat {seat.label}")
        pdf.showPage()
    pdf.save()
    return buf.getvalue()
