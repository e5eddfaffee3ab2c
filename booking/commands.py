"""Ops commands: `flask --app wsgi booking ...`."""
import json
import sys
from datetime import datetime, timedelta, timezone

import click
import sqlalchemy as sa
from flask import current_app
from flask.cli import AppGroup

from . import accounts, audit, catalog, event_admin, organizers, waiting_room
from .errors import BookingError
from .extensions import db
from .models import Event, Organizer, Seat, User
from .runtime import runtime

booking_cli = AppGroup("booking", help="Box office operations.")

DEMO_EMAIL = "demo@boxoffice.test"
DEMO_PASSWORD = "demo-buyer-2026"
DEMO_ORGANIZER = "Demo Productions"
DEMO_ADMIN = ("organizer@boxoffice.test", "demo-organizer-2026", "Demo Organizer")
DEMO_STAFF = ("door@boxoffice.test", "demo-door-2026", "Demo Door Staff")
DEMO_SECTIONS = [("Stalls", 10, 20, 6500), ("Circle", 6, 16, 4500), ("Balcony", 4, 14, 2500)]


def init_app(app):
    app.cli.add_command(booking_cli)


def _utc(value):
    """An ISO-8601 time (with Z or an offset; naive means UTC) as naive UTC."""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as err:
        raise click.BadParameter(f"not an ISO-8601 time: {value!r}") from err
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc).replace(tzinfo=None)
    return moment


@booking_cli.command("create-event")
@click.option("--name", required=True)
@click.option("--venue", required=True)
@click.option("--starts-at", required=True, help="ISO-8601, e.g. 2027-03-01T19:30:00Z")
@click.option("--rows", type=click.IntRange(1, 1000), default=None,
              help="Rows of a rectangular section (without --layout)")
@click.option("--seats-per-row", type=click.IntRange(1, 1000), default=None,
              help="Seats in each row of a rectangular section (without --layout)")
@click.option("--price-cents", type=click.IntRange(0, 10**8), default=None,
              help="The price of every seat (with --layout: of every tier without --tier-price)")
@click.option("--layout", "layout_file", type=click.File("r", encoding="utf-8"), default=None,
              help="A venue layout file (docs/LAYOUTS.md) instead of --rows/--seats-per-row")
@click.option("--tier-price", "tier_prices", multiple=True, metavar="TIER=CENTS",
              help="A layout tier's price, e.g. --tier-price Floor=9500 (repeatable)")
@click.option("--timezone", "venue_timezone", default="UTC", show_default=True,
              help="The venue's IANA time zone, for a venue made here")
@click.option("--currency", default="EUR", show_default=True)
@click.option("--section", default="Main", show_default=True)
@click.option("--on-sale-at", default=None,
              help="ISO-8601; holds are refused before it (default: on sale at once)")
@click.option("--waiting-room", is_flag=True,
              help="Put buyers in a waiting room: drawn at random at the on-sale, then in turn")
@click.option("--admission-rate", type=click.IntRange(1, 10**6), default=None,
              help="Buyers admitted per minute (default: derived from how the workers keep up)")
@click.option("--organizer", "organizer_id", type=click.IntRange(1, 2**31 - 1), default=None,
              help="The organizer that runs the event (default: none, a house event)")
def create_event_command(name, venue, starts_at, rows, seats_per_row, price_cents, layout_file,
                         tier_prices, venue_timezone, currency, section, on_sale_at,
                         waiting_room, admission_rate, organizer_id):
    """Create an event with ROWS x SEATS_PER_ROW seats, or on a venue layout; prints its id last."""
    if admission_rate is not None and not waiting_room:
        raise click.UsageError("--admission-rate needs --waiting-room")
    if layout_file is None:
        missing = [flag for flag, value in (("--rows", rows), ("--seats-per-row", seats_per_row),
                                            ("--price-cents", price_cents)) if value is None]
        if missing:
            raise click.UsageError(f"Missing option {', '.join(missing)} (or give --layout).")
        if tier_prices:
            raise click.UsageError("--tier-price needs --layout")
    elif rows is not None or seats_per_row is not None:
        raise click.UsageError("--layout replaces --rows and --seats-per-row")
    try:
        if layout_file is None:
            event = catalog.create_event(
                db.session, name=name, venue=venue, starts_at=_utc(starts_at), currency=currency,
                sections=[(section, rows, seats_per_row, price_cents)], organizer_id=organizer_id,
                venue_timezone=venue_timezone)
        else:
            event = event_admin.create_event_on_layout(
                db.session, organizer_id, venue_name=venue, venue_timezone=venue_timezone,
                layout=_layout_json(layout_file), name=name, starts_at=_utc(starts_at),
                currency=currency, prices=_tier_prices(tier_prices), default_price=price_cents)
    except BookingError as err:
        details = "".join(f"\n  {field}: {' '.join(msgs)}"
                          for field, msgs in (err.details.get("fields") or {}).items())
        raise click.ClickException(err.message + details) from err
    event.on_sale_at = _utc(on_sale_at) if on_sale_at else None
    event.waiting_room = "open" if waiting_room else None
    event.admission_rate_per_min = admission_rate
    db.session.commit()
    seats = db.session.scalar(sa.select(sa.func.count()).select_from(Seat)
                              .where(Seat.event_id == event.id))
    click.echo(f"created event {event.id} with {seats} seats", err=True)
    click.echo(event.id)


def _layout_json(handle):
    try:
        return json.load(handle)
    except ValueError as err:
        raise click.BadParameter(f"not JSON: {err}", param_hint="--layout") from err


def _tier_prices(pairs):
    prices = {}
    for pair in pairs:
        tier, sep, cents = pair.rpartition("=")
        if not sep or not tier.strip() or not cents.isdigit() or int(cents) > 10**8:
            raise click.BadParameter(f"{pair!r}: use TIER=CENTS, e.g. Floor=9500",
                                     param_hint="--tier-price")
        prices[tier.strip()] = int(cents)
    return prices


def demo_layout():
    """The demo's Grand Hall as a venue layout: DEMO_SECTIONS front to back, one price tier
    per section, the stalls split by a centre aisle, the circle and balcony curved."""
    sections, y = [], 6.0
    for name, rows, per_row, _price in DEMO_SECTIONS:
        straight = not sections
        sections.append({
            "name": name, "tier": name, "position": {"x": 20.0, "y": y},
            "aisle_width": 1.5,
            "rows": [{"name": chr(65 + i), "seats": per_row,
                      **({"gaps_after": [per_row // 2]} if straight else
                         {"curve_radius": 30.0 + i})} for i in range(rows)]})
        y += rows + 3
    return {"format": "boxoffice-venue-layout", "version": 1, "name": "Grand Hall",
            "plan": {"width": 40.0, "height": y},
            "stage": {"x": 8.0, "y": 1.0, "width": 24.0, "height": 3.0, "label": "Stage"},
            "focal_point": {"x": 20.0, "y": 4.0},
            "tiers": [name for name, *_ in DEMO_SECTIONS], "sections": sections}


def _demo_user(email, password, name):
    user = db.session.scalar(sa.select(User).where(User.email == email))
    if user is None:
        user = accounts.register_user(db.session, email=email, password=password, name=name)
        click.echo(f"created {name.lower()} {email} / {password}", err=True)
    return user


@booking_cli.command("seed-demo")
def seed_demo_command():
    """Create the demo organizer, its event, a buyer, an admin and door staff if missing (safe to rerun)."""
    _demo_user(DEMO_EMAIL, DEMO_PASSWORD, "Demo Buyer")
    _demo_user(*DEMO_ADMIN)
    _demo_user(*DEMO_STAFF)
    organizer = db.session.scalar(sa.select(Organizer).where(Organizer.name == DEMO_ORGANIZER))
    if organizer is None:
        organizer = organizers.create_organizer(db.session, DEMO_ORGANIZER, DEMO_ADMIN[0])
        organizers.add_member(db.session, organizer.id, DEMO_STAFF[0], "staff")
        click.echo(f"created organizer {organizer.id} ({DEMO_ORGANIZER})", err=True)
    if db.session.scalar(sa.select(sa.func.count()).select_from(Event)):
        click.echo("events exist; no demo event seeded", err=True)
    else:
        starts = (datetime.now(timezone.utc) + timedelta(days=30)).replace(
            hour=19, minute=30, second=0, microsecond=0, tzinfo=None)
        # From a layout, as an organizer would make it: the back office then shows the
        # venue's plan and capacity, and the seat map draws it.
        event = event_admin.create_event_on_layout(
            db.session, organizer.id, venue_name="Grand Hall", venue_timezone="Europe/Amsterdam",
            layout=demo_layout(), name="Boxoffice Live: Opening Night", starts_at=starts,
            currency="EUR", prices={name: price for name, _r, _s, price in DEMO_SECTIONS})
        click.echo(f"created demo event {event.id}", err=True)
    db.session.commit()


organizer_cli = AppGroup("organizer", help="Organizers and their members.")
booking_cli.add_command(organizer_cli)


@organizer_cli.command("create")
@click.option("--name", required=True)
@click.option("--admin-email", required=True, help="A registered user; becomes its first admin")
def organizer_create_command(name, admin_email):
    """Create an organizer with its first admin; prints the new organizer id last."""
    try:
        organizer = organizers.create_organizer(db.session, name, admin_email)
    except BookingError as err:
        raise click.ClickException(err.message) from err
    db.session.commit()
    click.echo(f"created organizer {organizer.id} with admin {admin_email}", err=True)
    click.echo(organizer.id)


@organizer_cli.command("add-member")
@click.option("--organizer", "organizer_id", required=True, type=click.IntRange(1, 2**31 - 1))
@click.option("--email", required=True, help="A registered user")
@click.option("--role", required=True, type=click.Choice(["admin", "staff"]))
def organizer_add_member_command(organizer_id, email, role):
    """Make a registered user admin or staff of an organizer (or change their role)."""
    try:
        organizers.add_member(db.session, organizer_id, email, role)
    except BookingError as err:
        raise click.ClickException(err.message) from err
    db.session.commit()
    click.echo(f"{email} is {role} of organizer {organizer_id}", err=True)


@booking_cli.command("audit")
@click.option("--event", "event_id", type=int, default=None)
def audit_command(event_id):
    """Check every booking invariant; JSON on stdout, exit 0 only if there is no problem."""
    config = current_app.config
    report = audit.run_audit(
        db.session, event_id=event_id, sweep_interval_s=config["SWEEP_INTERVAL_SECONDS"],
        processor=runtime().processor,
        settle_after_s=config["PAYMENT_TIMEOUT_SECONDS"] * 2 + config["RECONCILE_INTERVAL_SECONDS"] * 2)
    click.echo(json.dumps(report, indent=2))
    sys.exit(0 if not report["problems"] else 1)


room_cli = AppGroup("waiting-room", help="Open, pause, drain a waiting room; set its rate.")
booking_cli.add_command(room_cli)


def _room_state(event_id, state):
    try:
        event = waiting_room.set_room(db.session, event_id, state)
    except BookingError as err:
        raise click.ClickException(err.message) from err
    db.session.commit()
    click.echo(f"event {event.id}: waiting room {state} (every web instance within 2 s)",
               err=True)


@room_cli.command("open")
@click.argument("event_id", type=int)
def room_open_command(event_id):
    """Open (or resume) EVENT_ID's waiting room: buyers queue and are admitted at its rate."""
    _room_state(event_id, "open")


@room_cli.command("pause")
@click.argument("event_id", type=int)
def room_pause_command(event_id):
    """Stop admitting (buyers keep their places; tokens already given stay valid)."""
    _room_state(event_id, "paused")


@room_cli.command("drain")
@click.argument("event_id", type=int)
def room_drain_command(event_id):
    """Admit everyone still waiting at the rate, then turn the room off (no token needed)."""
    _room_state(event_id, "draining")


@room_cli.command("on-sale")
@click.argument("event_id", type=int)
@click.argument("moment")
def room_on_sale_command(event_id, moment):
    """Move the on-sale time: ISO-8601, or 'now' (the pre-queue is drawn at the next tick)."""
    from .models import utcnow
    try:
        waiting_room.set_on_sale(db.session, event_id,
                                 utcnow() if moment == "now" else _utc(moment))
    except BookingError as err:
        raise click.ClickException(err.message) from err
    db.session.commit()
    click.echo(f"event {event_id}: on sale at {moment}", err=True)


@room_cli.command("rate")
@click.argument("event_id", type=int)
@click.argument("per_minute")
def room_rate_command(event_id, per_minute):
    """Set the admission rate: buyers per minute, or 'auto' to derive it from the workers."""
    if per_minute == "auto":
        value = None
    else:
        try:
            value = int(per_minute)
        except ValueError:
            raise click.BadParameter("a number of buyers per minute, or 'auto'") from None
    try:
        waiting_room.set_rate(db.session, event_id, value)
    except BookingError as err:
        raise click.ClickException(err.message) from err
    db.session.commit()
    click.echo(f"event {event_id}: admission rate {per_minute}", err=True)


@room_cli.command("status")
@click.argument("event_id", type=int)
def room_status_command(event_id):
    """Print the room's state, rate and sizes as JSON."""
    try:
        status = waiting_room.room_status(db.session,
                                          runtime().waiting_room,
                                          event_id)
    except BookingError as err:
        raise click.ClickException(err.message) from err
    click.echo(json.dumps(status, indent=2))


ticket_key_cli = AppGroup("ticket-key", help="The Ed25519 keys that sign ticket codes.")
booking_cli.add_command(ticket_key_cli)


@ticket_key_cli.command("list")
def ticket_key_list_command():
    """Print the public keys (JSON), the signing one first."""
    from .tickets import signer
    click.echo(json.dumps({"keys": signer().public_keys()}))


@ticket_key_cli.command("new")
def ticket_key_new_command():
    """Print a new private key for TICKET_SIGNING_KEY (put it first, keep the old ones after it)."""
    from .ticket_codes import new_seed
    click.echo(new_seed())


@ticket_key_cli.command("rotate")
def ticket_key_rotate_command():
    """Sign new tickets with a new key in instance/ticket_signing_key; old tickets stay valid."""
    import os

    from .config import INSTANCE_DIR
    from .ticket_codes import load_keys, new_seed
    if os.environ.get("TICKET_SIGNING_KEY"):
        raise click.ClickException(
            "TICKET_SIGNING_KEY is set: put a key from `booking ticket-key new` first in it.")
    path = INSTANCE_DIR / "ticket_signing_key"
    seed = new_seed()
    old = path.read_text() if path.exists() else ""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(seed + "\n" + old)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    click.echo(f"new signing key {load_keys([seed])[0].kid}; restart the processes to use it",
               err=True)
    click.echo(load_keys([seed])[0].kid)
