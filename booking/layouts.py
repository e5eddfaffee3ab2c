"""Venue layouts: the documented JSON format (docs/LAYOUTS.md), validated and expanded to seats.

A layout places sections on a plan (x, y, rotation) and describes each
section's rows compactly (a count of seats, straight or on an arc, with aisle
gaps), so that a 2,000-seat theatre is a few kilobytes. `expand_layout` turns it
into one dict per seat, with the seat's plan coordinates: what the event's seat
rows store and what a seat map draws. Nothing here touches the database.
"""
import math

from marshmallow import (Schema, ValidationError, fields, validate, validates_schema)

from .errors import InvalidRequest
from .models import Seat

FORMAT = "boxoffice-venue-layout"
MAX_SEATS = 100_000
MAX_SECTIONS = 200
MAX_ROWS = 300
MAX_SEATS_PER_ROW = 500
BLOCK_REASONS = ("hold", "kill")
COORD = validate.Range(min=-100_000, max=100_000)
NAME = validate.Length(min=1, max=40)
ROW_NAME = validate.Length(min=1, max=10)
TIER_NAME = validate.Length(min=1, max=40)


class _Strict(Schema):
    """Layouts are files people write: an unknown (often misspelt) key is an error."""


def _number(**kw):
    return fields.Float(allow_nan=False, validate=COORD, **kw)


class PointSchema(_Strict):
    x = _number(required=True)
    y = _number(required=True)


class PlanSchema(_Strict):
    width = fields.Float(required=True, allow_nan=False, validate=validate.Range(min=1, max=100_000))
    height = fields.Float(required=True, allow_nan=False, validate=validate.Range(min=1, max=100_000))


class StageSchema(_Strict):
    x = _number(required=True)
    y = _number(required=True)
    width = fields.Float(required=True, allow_nan=False, validate=validate.Range(min=0.1, max=100_000))
    height = fields.Float(required=True, allow_nan=False, validate=validate.Range(min=0.1, max=100_000))
    label = fields.String(load_default="Stage", validate=validate.Length(max=40))


class PlacementSchema(_Strict):
    x = _number(required=True)
    y = _number(required=True)
    rotation = fields.Float(load_default=0.0, allow_nan=False,
                            validate=validate.Range(min=-360, max=360))


class RowSchema(_Strict):
    name = fields.String(required=True, validate=ROW_NAME)
    seats = fields.Integer(strict=True, required=True,
                           validate=validate.Range(min=1, max=MAX_SEATS_PER_ROW))
    first_number = fields.Integer(strict=True, load_default=1,
                                  validate=validate.Range(min=1, max=10_000))
    # Local coordinates of the row: its middle seat sits at (offset_x, y) unless
    # the row is curved, then the arc's middle does.
    y = _number(load_default=None)
    offset_x = _number(load_default=0.0)
    curve_radius = fields.Float(load_default=None, allow_nan=False,
                                validate=validate.Range(min=1, max=1_000_000))
    # An aisle after these seat positions (1 = after the first seat of the row).
    gaps_after = fields.List(fields.Integer(strict=True, validate=validate.Range(min=1)),
                             load_default=list, validate=validate.Length(max=50))
    numbering = fields.String(load_default="left_to_right",
                              validate=validate.OneOf(["left_to_right", "right_to_left"]))
    tier = fields.String(load_default=None, validate=TIER_NAME)


class MarkSchema(_Strict):
    """Flags and overrides for some seats of a section: whole rows, or some numbers of a row."""
    rows = fields.List(fields.String(validate=ROW_NAME), required=True,
                       validate=validate.Length(min=1, max=MAX_ROWS))
    numbers = fields.List(fields.Integer(strict=True, validate=validate.Range(min=1)),
                          load_default=None, validate=validate.Length(min=1, max=MAX_SEATS_PER_ROW))
    tier = fields.String(load_default=None, validate=TIER_NAME)
    blocked = fields.String(load_default=None, validate=validate.OneOf(BLOCK_REASONS))
    wheelchair = fields.Boolean(load_default=None)
    companion = fields.Boolean(load_default=None)
    restricted_view = fields.Boolean(load_default=None)


class SectionSchema(_Strict):
    name = fields.String(required=True, validate=NAME)
    tier = fields.String(required=True, validate=TIER_NAME)
    position = fields.Nested(PlacementSchema, required=True)
    seat_spacing = fields.Float(load_default=1.0, allow_nan=False,
                                validate=validate.Range(min=0.01, max=1000))
    row_spacing = fields.Float(load_default=1.0, allow_nan=False,
                               validate=validate.Range(min=0.01, max=1000))
    aisle_width = fields.Float(load_default=None, allow_nan=False,
                               validate=validate.Range(min=0, max=1000))
    rows = fields.List(fields.Nested(RowSchema), required=True,
                       validate=validate.Length(min=1, max=MAX_ROWS))
    marks = fields.List(fields.Nested(MarkSchema), load_default=list,
                        validate=validate.Length(max=1000))


class LayoutSchema(_Strict):
    format = fields.String(required=True, validate=validate.Equal(FORMAT))
    version = fields.Integer(strict=True, required=True, validate=validate.Equal(1))
    name = fields.String(load_default=None, validate=validate.Length(max=200))
    plan = fields.Nested(PlanSchema, required=True)
    stage = fields.Nested(StageSchema, required=True)
    focal_point = fields.Nested(PointSchema, required=True)
    tiers = fields.List(fields.String(validate=TIER_NAME), required=True,
                        validate=validate.Length(min=1, max=50))
    sections = fields.List(fields.Nested(SectionSchema), required=True,
                           validate=validate.Length(min=1, max=MAX_SECTIONS))

    @validates_schema(skip_on_field_errors=True)
    def _consistent(self, data, **kwargs):
        errors = {}
        tiers = data["tiers"]
        if len(set(tiers)) != len(tiers):
            errors["tiers"] = ["A tier may be listed once."]
        known = set(tiers)
        names = set()
        total = 0
        for i, section in enumerate(data["sections"]):
            where = f"sections.{i}"
            if section["name"] in names:
                errors[f"{where}.name"] = [f"Section {section['name']!r} is listed twice."]
            names.add(section["name"])
            if section["tier"] not in known:
                errors[f"{where}.tier"] = [f"Unknown tier {section['tier']!r}; "
                                           f"list it in 'tiers'."]
            rows = {}
            for j, row in enumerate(section["rows"]):
                if row["name"] in rows:
                    errors[f"{where}.rows.{j}.name"] = [f"Row {row['name']!r} is listed twice."]
                rows[row["name"]] = row
                if row["tier"] is not None and row["tier"] not in known:
                    errors[f"{where}.rows.{j}.tier"] = [f"Unknown tier {row['tier']!r}."]
                if row["curve_radius"] and _row_length(section, row) > math.pi * row["curve_radius"]:
                    errors[f"{where}.rows.{j}.curve_radius"] = [
                        "Too small for the row's length: the row would bend past a half circle."]
                bad_gaps = [g for g in row["gaps_after"] if g >= row["seats"]]
                if bad_gaps:
                    errors[f"{where}.rows.{j}.gaps_after"] = [
                        f"A gap must fall between seats 1 and {row['seats']}: {bad_gaps}."]
                total += row["seats"]
                label = f"{section['name']} {row['name']}{row['first_number'] + row['seats'] - 1}"
                if len(label) > Seat.__table__.c.label.type.length:
                    errors[f"{where}.rows.{j}.name"] = ["The seat labels would be too long."]
            for k, mark in enumerate(section["marks"]):
                problems = _mark_problems(mark, rows, known)
                if problems:
                    errors[f"{where}.marks.{k}"] = problems
        if total > MAX_SEATS:
            errors["sections"] = [f"At most {MAX_SEATS} seats in a venue ({total} given)."]
        if errors:
            raise ValidationError(errors)


def _mark_problems(mark, rows, tiers):
    problems = []
    unknown = [r for r in mark["rows"] if r not in rows]
    if unknown:
        problems.append(f"Unknown rows {unknown}.")
    elif mark["numbers"] is not None:
        for name in mark["rows"]:
            row = rows[name]
            valid = range(row["first_number"], row["first_number"] + row["seats"])
            missing = [n for n in mark["numbers"] if n not in valid]
            if missing:
                problems.append(f"Row {name} has no seats {missing}.")
    if mark["tier"] is not None and mark["tier"] not in tiers:
        problems.append(f"Unknown tier {mark['tier']!r}.")
    if all(mark[k] is None for k in ("tier", "blocked", "wheelchair", "companion",
                                     "restricted_view")):
        problems.append("A mark sets at least one of tier, blocked, wheelchair, companion, "
                        "restricted_view.")
    return problems


_layout_schema = LayoutSchema()


def _flatten(prefix, messages, out):
    """marshmallow's nested messages as dotted field paths: 'layout.sections.0.rows.2.seats'."""
    if isinstance(messages, dict):
        for key, inner in messages.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), inner, out)
    else:
        out.setdefault(prefix or "_schema", []).extend(
            messages if isinstance(messages, list) else [messages])
    return out


def load_layout(data, prefix="layout"):
    """The validated layout (defaults filled in); raises InvalidRequest with field paths."""
    if not isinstance(data, dict):
        raise InvalidRequest("The layout must be a JSON object.",
                             fields={prefix: ["Not a JSON object."]})
    try:
        return _layout_schema.load(data)
    except ValidationError as err:
        raise InvalidRequest("The venue layout is not valid.",
                             fields=_flatten(prefix, err.messages, {})) from None


def _aisle(section):
    return section["aisle_width"] if section["aisle_width"] is not None else section["seat_spacing"]


def _row_length(section, row):
    """From the first seat to the last along the row, aisles included."""
    gaps = len({g for g in row["gaps_after"] if g < row["seats"]})
    return (row["seats"] - 1) * section["seat_spacing"] + gaps * _aisle(section)


def _row_points(section, row, index):
    """Local (x, y) of each seat of a row, in seat order (first to last position)."""
    spacing, aisle = section["seat_spacing"], _aisle(section)
    gaps = set(row["gaps_after"])
    offsets, at = [], 0.0
    for position in range(1, row["seats"] + 1):
        offsets.append(at)
        at += spacing + (aisle if position in gaps else 0.0)
    middle = (offsets[0] + offsets[-1]) / 2
    y = row["y"] if row["y"] is not None else index * section["row_spacing"]
    radius = row["curve_radius"]
    points = []
    for offset in offsets:
        along = offset - middle
        if radius:
            # The arc bows away from the stage: its centre lies towards it (smaller y).
            angle = along / radius
            points.append((row["offset_x"] + radius * math.sin(angle),
                           y - radius + radius * math.cos(angle)))
        else:
            points.append((row["offset_x"] + along, y))
    return points


def _placed(position, x, y):
    turn = math.radians(position["rotation"])
    cos, sin = math.cos(turn), math.sin(turn)
    return (round(position["x"] + x * cos - y * sin, 2),
            round(position["y"] + x * sin + y * cos, 2))


def expand_layout(layout):
    """One dict per seat of a validated layout, in plan order.

    Keys: section, row, number, label, tier, x, y, blocked (None, 'hold' or
    'kill'), wheelchair, companion, restricted_view.
    """
    seats = []
    for section in layout["sections"]:
        marks = section["marks"]
        for index, row in enumerate(section["rows"]):
            points = _row_points(section, row, index)
            count = row["seats"]
            for position, (lx, ly) in enumerate(points, 1):
                number = row["first_number"] + (
                    position - 1 if row["numbering"] == "left_to_right" else count - position)
                x, y = _placed(section["position"], lx, ly)
                seat = {"section": section["name"], "row": row["name"], "number": number,
                        "label": f"{section['name']} {row['name']}{number}",
                        "tier": row["tier"] or section["tier"], "x": x, "y": y,
                        "blocked": None, "wheelchair": False, "companion": False,
                        "restricted_view": False}
                for mark in marks:
                    if row["name"] in mark["rows"] and (
                            mark["numbers"] is None or number in mark["numbers"]):
                        for key in ("tier", "blocked", "wheelchair", "companion",
                                    "restricted_view"):
                            if mark[key] is not None:
                                seat[key] = mark[key]
                seats.append(seat)
    return seats


def layout_tiers(layout):
    """The tier names a layout's seats use, in the layout's order."""
    used = {s["tier"] for s in expand_layout(layout)}
    return [t for t in layout["tiers"] if t in used]
