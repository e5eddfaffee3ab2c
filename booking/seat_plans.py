"""What a seat map draws, in compact form: the static plan of an event, and its live board.

A 20,000-seat arena as one object per seat is 4.8 MB of REST and a 900 kB join
snapshot. The map needs two different things:

- the plan: where each seat is, its section, row, number, price and marks. It
  changes only when the organizer reprices a tier or marks seats, so it is one
  cacheable REST response (`seat_plan`), as parallel arrays;
- the board: each seat's status and version, which changes all the time. The
  join answer carries it as a status string and a version array in seat id order
  (`compact_board`), when the client asks for it.

Events made without a layout (`booking create-event --rows`) have no plan
coordinates: `seat_plan` places their sections one under the other, rows as
straight lines, numbers left to right, facing a stage at the top.
"""
import json

import sqlalchemy as sa

from .errors import NotFound
from .models import ID_MAX, Event, PriceTier, Seat
from .venues import venue_layout

STATUS_CODES = {"available": "a", "held": "h", "sold": "s"}
# Flag bits of a seat in the plan.
WHEELCHAIR, COMPANION, RESTRICTED_VIEW, BLOCKED = 1, 2, 4, 8
# Plan units of the drawn grid of an event without a layout.
GRID_SEAT, GRID_ROW, GRID_SECTION_GAP, GRID_STAGE = 10.0, 12.0, 28.0, 40.0


def _ranges(ids):
    """Sorted ids as [[first, count], ...] runs of consecutive ids."""
    runs = []
    for i in ids:
        if runs and runs[-1][0] + runs[-1][1] == i:
            runs[-1][1] += 1
        else:
            runs.append([i, 1])
    return runs


def compact_board(states):
    """[{id, status, version, expires_at?}] as {ids: [[first, count]...], status: "aahs...",
    versions: [...], expiring: [{expires_at, ids: [[first, count]...]}...]}.

    In id order; status has one letter per seat (a available, h held, s sold);
    expiring groups the held seats whose hold can run out by when (the seats of one
    hold share it), soonest first.
    """
    ordered = sorted(states, key=lambda s: s["id"])
    expiring = {}
    for seat in ordered:
        if seat.get("expires_at"):
            expiring.setdefault(seat["expires_at"], []).append(seat["id"])
    return {"ids": _ranges([s["id"] for s in ordered]),
            "status": "".join(STATUS_CODES[s["status"]] for s in ordered),
            "versions": [s["version"] for s in ordered],
            "expiring": [{"expires_at": at, "ids": _ranges(ids)}
                         for at, ids in sorted(expiring.items())]}


def _grid_positions(rows):
    """Plan coordinates for seats without any: sections stacked, rows straight."""
    sections = {}
    for seat_id, section, row, number in rows:
        sections.setdefault(section, {}).setdefault(row, []).append((number, seat_id))
    widest = max(max(n for n, _ in seats) - min(n for n, _ in seats)
                 for rows_ in sections.values() for seats in rows_.values()) * GRID_SEAT
    positions, y = {}, GRID_STAGE + GRID_SECTION_GAP
    for rows_ in sections.values():
        low = min(n for seats in rows_.values() for n, _ in seats)
        high = max(n for seats in rows_.values() for n, _ in seats)
        left = (widest - (high - low) * GRID_SEAT) / 2
        for seats in rows_.values():
            for number, seat_id in seats:
                positions[seat_id] = (round(left + (number - low) * GRID_SEAT, 1), y)
            y += GRID_ROW
        y += GRID_SECTION_GAP - GRID_ROW
    width = widest + 2 * GRID_SEAT
    plan = {"width": width, "height": y}
    stage = {"x": width / 4, "y": 0.0, "width": width / 2, "height": GRID_STAGE * 0.6,
             "label": "Stage"}
    return positions, plan, stage, {"x": width / 2, "y": GRID_STAGE * 0.6}


def seat_plan(session, event_id):
    """The event's static seat map data; raises NotFound.

    {event_id, currency, plan, stage, focal_point, tiers: [{name, price_cents}],
    sections: [{name, rows: [names]}], prices: [cents...], seats: {ids, section,
    row, number, x, y, price, tier, flags}}: seats as parallel arrays in id order
    (ids as runs, see compact_board); section, row, price and tier are indexes
    into sections, the section's rows, prices and tiers (tier -1: none); flags
    are bits: 1 wheelchair, 2 companion, 4 restricted view, 8 blocked.
    """
    event = session.get(Event, event_id) if 0 < event_id <= ID_MAX else None
    if event is None:
        raise NotFound("No such event.", event_id=event_id)
    rows = session.execute(
        sa.select(Seat.id, Seat.section, Seat.row, Seat.number, Seat.x, Seat.y,
                  Seat.price_cents, Seat.tier, Seat.wheelchair, Seat.companion,
                  Seat.restricted_view, Seat.blocked)
        .where(Seat.event_id == event_id).order_by(Seat.id)).all()
    tiers = [{"name": name, "price_cents": cents} for name, cents in session.execute(
        sa.select(PriceTier.name, PriceTier.price_cents).where(PriceTier.event_id == event_id)
        .order_by(PriceTier.position, PriceTier.name)).all()]
    layout = venue_layout(event.venue)
    if layout and rows and all(r.x is not None for r in rows):
        positions = {r.id: (r.x, r.y) for r in rows}
        plan, stage, focal = layout["plan"], layout["stage"], layout["focal_point"]
    elif rows:
        positions, plan, stage, focal = _grid_positions([(r.id, r.section, r.row, r.number)
                                                         for r in rows])
    else:
        positions, plan, stage, focal = {}, {"width": 1, "height": 1}, None, None
    tier_index = {t["name"]: i for i, t in enumerate(tiers)}
    sections, section_index, row_index = [], {}, {}
    prices, price_index = [], {}
    out = {k: [] for k in ("section", "row", "number", "x", "y", "price", "tier", "flags")}
    for r in rows:
        if r.section not in section_index:
            section_index[r.section] = len(sections)
            sections.append({"name": r.section, "rows": []})
            row_index[r.section] = {}
        rows_of = row_index[r.section]
        if r.row not in rows_of:
            rows_of[r.row] = len(rows_of)
            sections[section_index[r.section]]["rows"].append(r.row)
        if r.price_cents not in price_index:
            price_index[r.price_cents] = len(prices)
            prices.append(r.price_cents)
        x, y = positions[r.id]
        out["section"].append(section_index[r.section])
        out["row"].append(rows_of[r.row])
        out["number"].append(r.number)
        out["x"].append(round(x, 1))
        out["y"].append(round(y, 1))
        out["price"].append(price_index[r.price_cents])
        out["tier"].append(tier_index.get(r.tier, -1))
        out["flags"].append(WHEELCHAIR * r.wheelchair | COMPANION * r.companion
                            | RESTRICTED_VIEW * r.restricted_view | BLOCKED * (r.blocked is not None))
    for key in ("x", "y"):
        # Whole numbers without ".0": a fifth of the bytes of a plan's coordinates.
        out[key] = [int(v) if v == int(v) else v for v in out[key]]
    return {"event_id": event_id, "currency": event.currency, "plan": plan, "stage": stage,
            "focal_point": focal, "tiers": tiers, "sections": sections, "prices": prices,
            "seats": {"ids": _ranges([r.id for r in rows]), **out}}


def encode_plan(plan):
    """The plan as compact JSON bytes (no spaces: it is the largest response of the API)."""
    return json.dumps(plan, separators=(",", ":")).encode()
