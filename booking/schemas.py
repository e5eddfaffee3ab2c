"""marshmallow schemas: every request body and socket payload is loaded through one."""
from marshmallow import (EXCLUDE, Schema, ValidationError, fields, post_load, validate,
                         validates, validates_schema)

from .models import ID_MAX, SEAT_STATUSES, iso_utc

# Clients may send fields a later version knows; unknown ones are ignored.
ID_RANGE = validate.Range(min=1, max=ID_MAX)
CLIENT_KEY = validate.Regexp(r"^[A-Za-z0-9_-]{1,64}$",
                             error="Use 1 to 64 characters from A-Z, a-z, 0-9, '_' and '-'.")
# An absolute bound on list sizes; the configured MAX_SEATS_PER_ORDER is
# enforced by the service as limit_exceeded.
SEAT_LIST_MAX = 100


def Id(**kw):
    return fields.Integer(strict=True, validate=ID_RANGE, **kw)


def ClientKey(**kw):
    return fields.String(validate=CLIENT_KEY, **kw)


class InputSchema(Schema):
    class Meta:
        unknown = EXCLUDE


class NewUserSchema(InputSchema):
    email = fields.Email(required=True, validate=validate.Length(max=254))
    password = fields.String(required=True, load_only=True, validate=validate.Length(max=1024))
    name = fields.String(load_default="", validate=validate.Length(max=100))

    @validates("password")
    def _strong(self, value, **kwargs):
        from .auth import password_problem
        problem = password_problem(value)
        if problem:
            raise ValidationError(problem)


class SessionSchema(InputSchema):
    email = fields.String(required=True, validate=validate.Length(min=1, max=254))
    password = fields.String(required=True, load_only=True, validate=validate.Length(min=1, max=1024))


class UserSchema(Schema):
    id = fields.Integer()
    email = fields.String()
    name = fields.String()


class EventRefSchema(InputSchema):
    event_id = Id(required=True)
    # v1.1, join_event: answer the snapshot as a compact board instead of seats.
    compact = fields.Boolean(load_default=False)


class BestRequestSchema(InputSchema):
    """v1.1: the worker chooses `count` seats (optionally in a section, up to a price)."""
    count = fields.Integer(strict=True, required=True,
                           validate=validate.Range(min=1, max=SEAT_LIST_MAX))
    section = fields.String(validate=validate.Length(min=1, max=40))
    max_price_cents = fields.Integer(strict=True, validate=validate.Range(min=0, max=10**9))


class HoldRequestSchema(InputSchema):
    request_id = ClientKey(required=True)
    event_id = Id(required=True)
    # seat_ids, or best (v1.1): exactly one of them.
    seat_ids = fields.List(Id(), validate=validate.Length(min=1, max=SEAT_LIST_MAX))
    best = fields.Nested(BestRequestSchema)
    admission_token = fields.String(validate=validate.Length(max=2048))

    @validates("seat_ids")
    def _distinct(self, value, **kwargs):
        if len(set(value)) != len(value):
            raise ValidationError("A seat may be listed once.")

    # Also when other fields are wrong: a payload naming neither hears about seat_ids.
    @validates_schema(skip_on_field_errors=False, pass_original=True)
    def _seats_or_best(self, data, original_data, **kwargs):
        given = original_data if isinstance(original_data, dict) else {}
        if ("seat_ids" in given) == ("best" in given):
            raise ValidationError("Give seat_ids or best, not both.", "seat_ids")


class ReleaseRequestSchema(InputSchema):
    request_id = ClientKey(required=True)
    hold_id = Id(required=True)


class CardSchema(InputSchema):
    """Card details, checked without a processor. Never stored or logged."""
    # ASCII digits only (spaces and dashes allowed between them in the number): Python's
    # isdigit() and \d also take other scripts' digits and superscripts, which no card has.
    number = fields.String(required=True, validate=[
        validate.Length(min=1, max=40),
        validate.Regexp(r"^[0-9 -]+\Z", error="Use the digits 0-9 only.")])
    exp_month = fields.Integer(strict=True, required=True, validate=validate.Range(min=1, max=12))
    exp_year = fields.Integer(strict=True, required=True, validate=validate.Range(min=0, max=2100))
    cvc = fields.String(required=True, validate=[
        validate.Length(min=1, max=8),
        validate.Regexp(r"^[0-9]+\Z", error="Use the digits 0-9 only.")])
    name = fields.String(load_default="", validate=validate.Length(max=100))

    @validates_schema(skip_on_field_errors=True)
    def _card(self, data, **kwargs):
        from .payments import cards
        number = cards.digits_only(data["number"])
        errors = {}
        if not cards.luhn_valid(number):
            errors["number"] = ["This card number is not valid."]
        year = data["exp_year"] + 2000 if data["exp_year"] < 100 else data["exp_year"]
        if cards.expired(data["exp_month"], year):
            errors["exp_year"] = ["This card has expired."]
        if "number" not in errors and not cards.cvc_valid(data["cvc"], cards.brand(number)):
            errors["cvc"] = ["The security code is not valid for this card."]
        if errors:
            raise ValidationError(errors)

    @post_load
    def _normalize(self, data, **kwargs):
        from .payments import cards
        data["number"] = cards.digits_only(data["number"])
        if data["exp_year"] < 100:
            data["exp_year"] += 2000
        return data


class PayRequestSchema(InputSchema):
    """A card (the simulated processor) or a processor's browser token (Stripe.js), not both."""
    request_id = ClientKey(required=True)
    hold_id = Id(required=True)
    idempotency_key = ClientKey(required=True)
    card = fields.Nested(CardSchema)
    payment_token = fields.String(validate=validate.Regexp(r"^tok_[A-Za-z0-9_]{1,200}$"))

    @validates_schema(skip_on_field_errors=True)
    def _one_instrument(self, data, **kwargs):
        if ("card" in data) == ("payment_token" in data):
            raise ValidationError("Send either card or payment_token.", "card")


class ConfirmPaymentSchema(InputSchema):
    """The browser finished the processor's challenge for the payment under this key."""
    request_id = ClientKey(required=True)
    hold_id = Id(required=True)
    idempotency_key = ClientKey(required=True)


class SeatStateSchema(Schema):
    id = fields.Integer()
    status = fields.String(validate=validate.OneOf(SEAT_STATUSES))
    version = fields.Integer()
    # v1.1: a held seat whose hold can run out says when (booking.outcome.seat_state);
    # from then on it is available to the next buyer who asks.
    expires_at = fields.String()


class SeatSchema(SeatStateSchema):
    label = fields.String()
    section = fields.String()
    row = fields.String()
    number = fields.Integer()
    price_cents = fields.Integer()
    # v1.1: where a seat map draws it (null without a venue plan), and its marks. A
    # blocked seat is not for sale whatever its status says.
    x = fields.Float()
    y = fields.Float()
    tier = fields.String()
    blocked = fields.Function(lambda s: s.blocked is not None)
    wheelchair = fields.Boolean()
    companion = fields.Boolean()
    restricted_view = fields.Boolean()


class UTCDateTimeField(fields.Field):
    """A naive UTC datetime written as ISO-8601 with a Z."""

    def _serialize(self, value, attr, obj, **kwargs):
        return iso_utc(value)


class EventSchema(Schema):
    id = fields.Integer()
    name = fields.String()
    venue = fields.Function(lambda e: e.venue.name)
    timezone = fields.Function(lambda e: e.venue.timezone)
    starts_at = UTCDateTimeField()
    currency = fields.String()
    seats_total = fields.Integer()
    seats_available = fields.Integer()
    price_min_cents = fields.Integer()
    price_max_cents = fields.Integer()


class SectionSchema(Schema):
    name = fields.String()
    rows = fields.List(fields.String())


class EventDetailSchema(EventSchema):
    sections = fields.List(fields.Nested(SectionSchema))


def _ticket_json(ticket):
    from .tickets import ticket_json
    return ticket_json(ticket)


class OrderSchema(Schema):
    id = fields.Integer()
    event_id = fields.Integer()
    status = fields.String()
    amount_cents = fields.Integer()
    currency = fields.String()
    seats = fields.Function(lambda o: [{"id": i.seat_id, "label": i.label,
                                        "price_cents": i.price_cents} for i in o.items])
    payment = fields.Function(lambda o: {"brand": o.payment.brand, "last4": o.payment.last4,
                                         "reference": o.payment.reference} if o.payment else None)
    created_at = UTCDateTimeField()
    tickets = fields.Function(lambda o: [_ticket_json(t) for t in o.tickets])


# ------------------------------------------------------------- what sockets send

class ErrorSchema(Schema):
    """The contract's error object, in REST bodies and in failed acks and results."""
    code = fields.String()
    message = fields.String()
    details = fields.Dict()


class ReplySchema(Schema):
    """A socket ack or result: ok with the request's fields, or not ok with an error."""
    request_id = fields.String(allow_none=True)
    ok = fields.Boolean()
    error = fields.Nested(ErrorSchema)
    queued = fields.Boolean()   # acks: whether a result event is still to come
    event_id = fields.Integer()  # leave_event's ack


class HoldResultSchema(ReplySchema):
    hold_id = fields.Integer()
    event_id = fields.Integer()
    seat_ids = fields.List(fields.Integer())
    expires_at = UTCDateTimeField()
    amount_cents = fields.Integer()
    currency = fields.String()


class ReleaseResultSchema(ReplySchema):
    hold_id = fields.Integer()


class PaymentResultSchema(ReplySchema):
    order_id = fields.Integer()
    hold_id = fields.Integer()


class OpenHoldSchema(Schema):
    """One of the buyer's open holds, as join_event tells every socket of the buyer."""
    hold_id = fields.Integer()
    event_id = fields.Integer()
    seat_ids = fields.List(fields.Integer())
    status = fields.String()  # held, or paying: a payment for it is in progress
    expires_at = UTCDateTimeField()
    amount_cents = fields.Integer()
    currency = fields.String()


class SeatsChangedSchema(Schema):
    event_id = fields.Integer()
    seats = fields.List(fields.Nested(SeatStateSchema))
    committed_at = fields.String()
    sent_at = fields.String()


class SnapshotSchema(Schema):
    """join_event's ack: every seat's state, and the buyer's place if the event is gated."""
    ok = fields.Boolean()
    event_id = fields.Integer()
    # Dumped by SeatStateSchema as they entered the process's seat board
    # (booking.catalog.seat_states, and seats_changed): 2,000 seats dumped
    # again at every join would cost ~16 ms of a web process's CPU each.
    seats = fields.Raw()
    # v1.1, join_event {compact: true}: instead of seats, {ids, status, versions,
    # expiring} (booking.seat_plans.compact_board).
    board = fields.Raw()
    waiting_room = fields.Dict()
    # v1.1: a signed-in buyer's open holds on the event (booking.holds.open_holds_of).
    holds = fields.List(fields.Nested(OpenHoldSchema))
