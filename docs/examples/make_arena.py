"""Writes docs/examples/arena-20000.json: a 20,000-seat arena in the venue layout format.

An end stage at the top of the plan, three flat floor blocks in front of it, and a
lower and an upper bowl of curved sections around the floor (rows are arcs around
the arena's centre, so each section faces the floor), with vomitory gaps between
sections, a middle aisle in the upper sections, wheelchair platforms with companion
seats at the back of the lower bowl, restricted-view seats beside the stage and a
killed sound-desk position on the floor. Run it again after changing a number:

    .venv/bin/python docs/examples/make_arena.py
"""
import json
import math
from pathlib import Path

TOTAL = 20_000
CENTRE = (1000.0, 950.0)
SEAT, ROW = 5.0, 8.0
# The bowl's sections run from one side of the stage round to the other.
BOWL_FROM, BOWL_TO = math.radians(-38), math.radians(218)


def letters(n):
    out, n = "", n + 1
    while n:
        n, rem = divmod(n - 1, 26)
        out = chr(65 + rem) + out
    return out


ROW_NAMES = [letters(i) for i in range(80) if letters(i) not in ("I", "O")]


def bowl(prefix, count, inner, rows, gap_deg, tier_of, aisle=False, marks_of=None):
    sections = []
    span = (BOWL_TO - BOWL_FROM) / count
    gap = math.radians(gap_deg)
    for k in range(count):
        start = BOWL_FROM + k * span + gap / 2
        stop = BOWL_FROM + (k + 1) * span - gap / 2
        middle = (start + stop) / 2
        out = []
        for i in range(rows):
            radius = inner + i * ROW
            seats = int(radius * (stop - start) / SEAT) + 1
            if aisle:
                seats -= 2  # the middle aisle takes about two seats' width
            row = {"name": ROW_NAMES[i], "seats": seats, "curve_radius": round(radius, 1)}
            if aisle:
                row["gaps_after"] = [seats // 2]
            out.append(row)
        name = f"{prefix}{k + 1:02d}"
        section = {
            "name": name, "tier": tier_of(k, count),
            "position": {"x": round(CENTRE[0] + inner * math.cos(middle), 2),
                         "y": round(CENTRE[1] + inner * math.sin(middle), 2),
                         "rotation": round(math.degrees(middle) - 90, 3)},
            "seat_spacing": SEAT, "row_spacing": ROW, "rows": out,
        }
        if aisle:
            section["aisle_width"] = 14
        marks = marks_of(k, count, out) if marks_of else []
        if marks:
            section["marks"] = marks
        sections.append(section)
    return sections


def lower_tier(k, count):
    # Facing the stage from the far end and the long sides' middle: the best bowl seats.
    return "Lower Centre" if count // 4 <= k < count - count // 4 else "Lower Side"


def lower_marks(k, count, rows):
    marks = []
    if k in (0, count - 1):
        marks.append({"rows": [r["name"] for r in rows[:6]], "tier": "Restricted",
                      "restricted_view": True})
    if k % 3 == 1:
        back = rows[-1]
        n = back["seats"]
        marks.append({"rows": [back["name"]], "numbers": [1, 2, n - 1, n], "wheelchair": True})
        marks.append({"rows": [back["name"]], "numbers": [3, n - 2], "companion": True})
    return marks


def upper_marks(k, count, rows):
    if k in (0, 1, count - 2, count - 1):
        return [{"rows": [r["name"] for r in rows], "tier": "Restricted",
                 "restricted_view": True}]
    return []


def floor(rows):
    blocks = [("Floor Left", 16, -112.5), ("Floor Centre", 24, 0.0), ("Floor Right", 16, 112.5)]
    sections = []
    for name, seats, dx in blocks:
        section = {"name": name, "tier": "Floor",
                   "position": {"x": CENTRE[0] + dx, "y": 600.0, "rotation": 0},
                   "seat_spacing": SEAT, "row_spacing": ROW,
                   "rows": [{"name": ROW_NAMES[i], "seats": seats} for i in range(rows)]}
        if name == "Floor Centre":
            # The sound desk: a killed block at the back of the floor.
            section["marks"] = [{"rows": [ROW_NAMES[rows - 2], ROW_NAMES[rows - 1]],
                                 "numbers": list(range(9, 17)), "blocked": "kill"}]
        sections.append(section)
    return sections


def build():
    lower = bowl("1", 20, 540.0, 18, 1.4, lower_tier, marks_of=lower_marks)
    upper = bowl("2", 16, 700.0, 15, 1.6, lambda k, n: "Upper", aisle=True,
                 marks_of=upper_marks)
    bowl_seats = sum(r["seats"] for s in lower + upper for r in s["rows"])
    # The floor takes what is left: whole rows, then the last row trimmed.
    per_row = 16 + 24 + 16
    rows = -(-(TOTAL - bowl_seats) // per_row)
    floor_sections = floor(rows)
    extra = rows * per_row - (TOTAL - bowl_seats)
    for section in (floor_sections[0], floor_sections[2]):
        cut = min(extra // 2 + extra % 2 if section is floor_sections[0] else extra, 15)
        section["rows"][-1]["seats"] -= cut
        extra -= cut
    assert extra == 0, extra
    return {
        "format": "boxoffice-venue-layout", "version": 1,
        "name": "Example Arena (20,000 seats)",
        "plan": {"width": 2000, "height": 1900},
        "stage": {"x": 820, "y": 430, "width": 360, "height": 110, "label": "Stage"},
        "focal_point": {"x": 1000, "y": 540},
        "tiers": ["Floor", "Lower Centre", "Lower Side", "Upper", "Restricted"],
        "sections": floor_sections + lower + upper,
    }


if __name__ == "__main__":
    layout = build()
    path = Path(__file__).with_name("arena-20000.json")
    path.write_text(json.dumps(layout, indent=1) + "\n")
    print(path, sum(r["seats"] for s in layout["sections"] for r in s["rows"]), "seats")
