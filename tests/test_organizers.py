"""Organizers and roles: who may see and run which events.

The services are called directly on real rows (MariaDB); the commands through the
Flask CLI runner, as an operator types them.
"""
import pytest
import sqlalchemy as sa

from booking import accounts, catalog, organizers
from booking.errors import Conflict, Forbidden, InvalidRequest, NotFound
from booking.extensions import db
from booking.models import Event, Membership, Venue
from tests.contract import STRONG_PASSWORD, row_counts

ADMIN, STAFF, BUYER, OTHER = ("admin@org.test", "staff@org.test", "buyer@org.test",
                              "other-admin@org.test")


@pytest.fixture
def people(app):
    """Four accounts; returns {email: user id}."""
    with app.app_context():
        ids = {email: accounts.register_user(db.session, email=email,
                                             password=STRONG_PASSWORD).id
               for email in (ADMIN, STAFF, BUYER, OTHER)}
        db.session.commit()
        db.session.remove()
    return ids


@pytest.fixture
def two_organizers(app, people):
    """Organizer A (admin + staff, one event) and organizer B (its own admin, one event)."""
    with app.app_context():
        a = organizers.create_organizer(db.session, "Alpha Live", ADMIN)
        organizers.add_member(db.session, a.id, STAFF, "staff")
        b = organizers.create_organizer(db.session, "Beta Shows", OTHER)
        event_a = catalog.create_event(db.session, name="A night", venue="Main Hall",
                                       starts_at=catalog_time(), sections=[("S", 1, 2, 100)],
                                       organizer_id=a.id)
        event_b = catalog.create_event(db.session, name="B night", venue="Main Hall",
                                       starts_at=catalog_time(), sections=[("S", 1, 2, 100)],
                                       organizer_id=b.id)
        house = catalog.create_event(db.session, name="House night", venue="Main Hall",
                                     starts_at=catalog_time(), sections=[("S", 1, 2, 100)])
        db.session.commit()
        result = {"a": a.id, "b": b.id, "event_a": event_a.id, "event_b": event_b.id,
                  "house": house.id}
        db.session.remove()
    return result


def catalog_time():
    from datetime import datetime
    return datetime(2031, 1, 1, 20, 0)


def test_roles_decide_what_each_member_may_do(app, people, two_organizers):
    o = two_organizers
    with app.app_context():
        s = db.session
        assert organizers.authorize_event(s, people[ADMIN], o["event_a"], "admin").id == o["event_a"]
        assert organizers.authorize_event(s, people[STAFF], o["event_a"], "staff").id == o["event_a"]
        with pytest.raises(Forbidden):
            organizers.authorize_event(s, people[STAFF], o["event_a"], "admin")
        # Not a member, another organizer's admin, an unknown id and a house event
        # all look the same: not found.
        for user, event in ((BUYER, o["event_a"]), (OTHER, o["event_a"]), (ADMIN, o["event_b"]),
                            (ADMIN, o["house"]), (ADMIN, 10**6), (ADMIN, 2**40), (ADMIN, 0)):
            with pytest.raises(NotFound):
                organizers.authorize_event(s, people[user], event, "staff")
        with pytest.raises(NotFound):
            organizers.authorize_organizer(s, people[BUYER], o["a"])
        assert organizers.authorize_organizer(s, people[OTHER], o["b"], "admin") == "admin"
        assert [(org.name, role) for org, role in organizers.organizers_of(s, people[STAFF])] == [
            ("Alpha Live", "staff")]
        assert organizers.organizers_of(s, people[BUYER]) == []


def test_venue_names_are_per_organizer(app, two_organizers):
    """Both organizers (and the house) may have a 'Main Hall'; each event uses its own."""
    with app.app_context():
        venues = db.session.execute(sa.select(Event.organizer_id, Venue.organizer_id).join(
            Venue, Venue.id == Event.venue_id)).all()
        assert sorted(venues, key=str) == sorted(
            [(two_organizers["a"], two_organizers["a"]), (two_organizers["b"], two_organizers["b"]),
             (None, None)], key=str)


def test_membership_changes_and_refusals(app, people, two_organizers):
    o = two_organizers
    with app.app_context():
        s = db.session
        organizers.add_member(s, o["a"], STAFF, "admin")  # promote
        assert organizers.role_of(s, people[STAFF], o["a"]) == "admin"
        organizers.remove_member(s, o["a"], people[STAFF])
        assert organizers.role_of(s, people[STAFF], o["a"]) is None
        with pytest.raises(Conflict):  # the last admin stays
            organizers.remove_member(s, o["a"], people[ADMIN])
        with pytest.raises(NotFound):
            organizers.add_member(s, o["a"], "nobody@org.test", "staff")
        with pytest.raises(InvalidRequest):
            organizers.add_member(s, o["a"], BUYER, "owner")
        with pytest.raises(NotFound):
            organizers.add_member(s, 10**6, BUYER, "staff")
        with pytest.raises(Conflict):
            organizers.create_organizer(s, "Alpha Live", BUYER)
        with pytest.raises(InvalidRequest):
            organizers.create_organizer(s, "  ", BUYER)
        s.rollback()


def test_the_schema_refuses_an_unknown_role(app, people, two_organizers):
    """The check constraint backs the service: no 'owner' role, whatever code writes."""
    with app.app_context():
        db.session.add(Membership(organizer_id=two_organizers["a"], user_id=people[BUYER],
                                  role="owner"))
        with pytest.raises(sa.exc.DBAPIError):
            db.session.flush()
        db.session.rollback()


def test_organizer_commands(app, runner, people):
    """`organizer create` prints the id last; add-member and create-event --organizer use it."""
    result = runner.invoke(args=["booking", "organizer", "create", "--name", "Gamma",
                                 "--admin-email", ADMIN])
    assert result.exit_code == 0, result.output
    organizer_id = int(result.stdout.strip().splitlines()[-1])
    result = runner.invoke(args=["booking", "organizer", "add-member", "--organizer",
                                 str(organizer_id), "--email", STAFF, "--role", "staff"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(args=[
        "booking", "create-event", "--name", "Gamma night", "--venue", "Gamma Hall",
        "--starts-at", "2031-02-01T20:00:00Z", "--rows", "2", "--seats-per-row", "3",
        "--price-cents", "1500", "--organizer", str(organizer_id)])
    assert result.exit_code == 0, result.output
    event_id = int(result.stdout.strip().splitlines()[-1])
    with app.app_context():
        assert db.session.get(Event, event_id).organizer_id == organizer_id
        assert organizers.role_of(db.session, people[STAFF], organizer_id) == "staff"
        db.session.remove()


@pytest.mark.parametrize("args", [
    ["organizer", "create", "--name", "Delta", "--admin-email", "nobody@org.test"],
    ["organizer", "create", "--name", "", "--admin-email", ADMIN],
    ["organizer", "add-member", "--organizer", "999999", "--email", STAFF, "--role", "staff"],
    ["organizer", "add-member", "--organizer", "1", "--email", STAFF, "--role", "owner"],
    ["create-event", "--name", "X", "--venue", "Y", "--starts-at", "2031-02-01T20:00:00Z",
     "--rows", "1", "--seats-per-row", "1", "--price-cents", "1", "--organizer", "999999"],
])
def test_organizer_commands_refuse_bad_input(app, runner, people, args):
    """A clear message, a non-zero exit, no id printed and nothing written."""
    before = row_counts(app)
    result = runner.invoke(args=["booking", *args])
    assert result.exit_code != 0
    assert result.stdout.strip() == ""
    assert row_counts(app) == before
