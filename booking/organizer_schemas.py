"""marshmallow schemas of the organizer API and the back-office forms (one set for both)."""
from datetime import timezone

from marshmallow import ValidationError, fields, validate, validates_schema

from .models import BLOCK_REASONS, MEMBER_ROLES, WAITING_ROOM_STATES
from .schemas import ID_RANGE, Id, InputSchema

PRICE = validate.Range(min=0, max=10**8)
SEAT_FLAGS = ("wheelchair", "companion", "restricted_view")


class AwareDateTime(fields.DateTime):
    """An ISO-8601 time with Z or an offset, loaded as naive UTC (how times are stored)."""

    default_error_messages = {"naive": "Give the time zone: end with Z or an offset like +01:00."}

    def _deserialize(self, value, attr, data, **kwargs):
        moment = super()._deserialize(value, attr, data, **kwargs)
        if moment.tzinfo is None:
            raise self.make_error("naive")
        if not 2000 <= moment.year <= 2200:
            raise ValidationError("Give a year between 2000 and 2200.")
        return moment.astimezone(timezone.utc).replace(tzinfo=None)


class Currency(fields.String):
    def __init__(self, **kw):
        super().__init__(validate=validate.Regexp(r"^[A-Za-z]{3}$",
                                                  error="An ISO currency code such as EUR."), **kw)

    def _deserialize(self, value, attr, data, **kwargs):
        return super()._deserialize(value, attr, data, **kwargs).upper()


class OrganizerRefSchema(InputSchema):
    organizer_id = Id(load_default=None)


class OrganizerQuerySchema(InputSchema):
    """?organizer_id= in a query string (a string of digits)."""
    organizer_id = fields.Integer(load_default=None, validate=ID_RANGE)


class NewVenueSchema(OrganizerRefSchema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=200))
    timezone = fields.String(required=True, validate=validate.Length(min=1, max=64))
    layout = fields.Dict(required=True)


class TierSchema(InputSchema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=40))
    price_cents = fields.Integer(strict=True, required=True, validate=PRICE)


class NewEventSchema(InputSchema):
    venue_id = Id(required=True)
    name = fields.String(required=True, validate=validate.Length(min=1, max=200))
    starts_at = AwareDateTime(required=True)
    price_tiers = fields.List(fields.Nested(TierSchema), required=True,
                              validate=validate.Length(min=1, max=50))
    currency = Currency(load_default="EUR")
    description = fields.String(load_default=None, allow_none=True,
                                validate=validate.Length(max=5000))
    on_sale_at = AwareDateTime(load_default=None, allow_none=True)
    waiting_room = fields.Boolean(load_default=False)
    admission_rate_per_min = fields.Integer(strict=True, load_default=None, allow_none=True,
                                            validate=validate.Range(min=1, max=10**6))


class EventChangesSchema(InputSchema):
    name = fields.String(validate=validate.Length(min=1, max=200))
    description = fields.String(allow_none=True, validate=validate.Length(max=5000))
    starts_at = AwareDateTime()
    currency = Currency()
    venue_id = Id()

    @validates_schema
    def _something(self, data, **kwargs):
        if not data:
            raise ValidationError("Name at least one of name, description, starts_at, currency.")


class TierPriceSchema(InputSchema):
    price_cents = fields.Integer(strict=True, required=True, validate=PRICE)


class SeatChangesSchema(InputSchema):
    tier = fields.String(validate=validate.Length(min=1, max=40))
    blocked = fields.String(allow_none=True, validate=validate.OneOf(BLOCK_REASONS))
    wheelchair = fields.Boolean()
    companion = fields.Boolean()
    restricted_view = fields.Boolean()


class SeatSelectionSchema(InputSchema):
    seat_ids = fields.List(fields.Integer(strict=True, validate=ID_RANGE),
                           validate=validate.Length(min=1, max=100_000))
    section = fields.String(validate=validate.Length(min=1, max=40))
    rows = fields.List(fields.String(validate=validate.Length(min=1, max=10)),
                       validate=validate.Length(min=1, max=500))
    numbers = fields.List(fields.Integer(strict=True, validate=validate.Range(min=1, max=10**6)),
                          validate=validate.Length(min=1, max=1000))
    set = fields.Nested(SeatChangesSchema, required=True)

    @validates_schema
    def _one_way(self, data, **kwargs):
        if ("seat_ids" in data) == ("section" in data):
            raise ValidationError("Give seat_ids, or a section (with rows and numbers).",
                                  "section")


class RateField(fields.Field):
    """Buyers a minute (an integer of at least 1), or 'auto' (derived)."""

    def _deserialize(self, value, attr, data, **kwargs):
        if value == "auto" or value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 10**6:
            raise ValidationError("A whole number of buyers a minute (1 to 1,000,000), or 'auto'.")
        return value


class SaleControlsSchema(InputSchema):
    on_sale_at = AwareDateTime(allow_none=True)
    waiting_room = fields.String(validate=validate.OneOf(WAITING_ROOM_STATES))
    admission_rate_per_min = RateField(allow_none=True)

    @validates_schema
    def _something(self, data, **kwargs):
        if not data:
            raise ValidationError("Name at least one of on_sale_at, waiting_room, "
                                  "admission_rate_per_min.")


class NewMemberSchema(InputSchema):
    email = fields.Email(required=True, validate=validate.Length(max=254))
    role = fields.String(required=True, validate=validate.OneOf(MEMBER_ROLES))


class OrderSearchSchema(InputSchema):
    q = fields.String(load_default="", validate=validate.Length(max=254))
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=200))
