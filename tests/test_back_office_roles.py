"""Every organizer route and back-office page, tried by everyone who must not use it.

Signed out: 401 (API) or the login page (pages). A buyer (member of nothing) and an
admin of another organizer: 404 for the organizer's events, venues and members (their
existence is not revealed); a buyer's organizer-less list call: 403. Staff read
everything but every write is 403. Refused writes change nothing (every row of every
table compared). The admin gets through.
"""
import pytest

from tests.back_office import buy, fingerprint, seat_ids_of
from tests.contract import assert_error

# Every route is tried for four callers in a row, far faster than a person clicks: the
# per-account budget (20 a second) would answer rate_limited instead of the role's answer.
pytestmark = pytest.mark.app_config(USER_RATE_LIMIT="100000/second")

# (method, path, body, need): `{a}` organizer A, `{va}` its venue, `{ea}` its event,
# `{oa}` an order of it, `{staff}` the staff member's user id.
API = [
    ("GET", "/api/v1/organizer/venues?organizer_id={a}", None, "staff"),
    ("POST", "/api/v1/organizer/venues", {"organizer_id": "{a}", "name": "New Hall",
                                          "timezone": "UTC", "layout": "SMALL"}, "admin"),
    ("GET", "/api/v1/organizer/venues/{va}", None, "staff"),
    ("GET", "/api/v1/organizer/events?organizer_id={a}", None, "staff"),
    ("POST", "/api/v1/organizer/events", {"venue_id": "{va}", "name": "New night",
                                          "starts_at": "2031-05-01T18:00:00Z",
                                          "price_tiers": [{"name": "Front", "price_cents": 1},
                                                          {"name": "Back", "price_cents": 1}]},
     "admin"),
    ("GET", "/api/v1/organizer/events/{ea}", None, "staff"),
    ("PATCH", "/api/v1/organizer/events/{ea}", {"name": "Renamed"}, "admin"),
    ("PUT", "/api/v1/organizer/events/{ea}/tiers/Back", {"price_cents": 1}, "admin"),
    ("DELETE", "/api/v1/organizer/events/{ea}/tiers/Back", None, "admin"),
    ("GET", "/api/v1/organizer/events/{ea}/seats", None, "staff"),
    ("POST", "/api/v1/organizer/events/{ea}/seats",
     {"section": "Hall", "rows": ["B"], "set": {"blocked": "kill"}}, "admin"),
    ("GET", "/api/v1/organizer/events/{ea}/sale", None, "staff"),
    ("POST", "/api/v1/organizer/events/{ea}/sale", {"waiting_room": "open"}, "admin"),
    ("GET", "/api/v1/organizer/events/{ea}/sales", None, "staff"),
    ("GET", "/api/v1/organizer/events/{ea}/audit", None, "staff"),
    ("GET", "/api/v1/organizer/events/{ea}/orders?q=a", None, "staff"),
    ("GET", "/api/v1/organizer/events/{ea}/orders/{oa}", None, "staff"),
    ("GET", "/api/v1/organizer/events/{ea}/orders.csv", None, "staff"),
    ("GET", "/api/v1/organizer/events/{ea}/orders.xlsx", None, "staff"),
    ("GET", "/api/v1/organizer/organizers/{a}/members", None, "admin"),
    ("POST", "/api/v1/organizer/organizers/{a}/members", {"email": "new@x.test",
                                                          "role": "staff"}, "admin"),
    ("DELETE", "/api/v1/organizer/organizers/{a}/members/{staff}", None, "admin"),
    ("DELETE", "/api/v1/organizer/organizers/{a}/invitations/1", None, "admin"),
]
# Calls that name no organizer: a buyer is told it belongs to none (403).
UNSCOPED = [("GET", "/api/v1/organizer/venues"), ("GET", "/api/v1/organizer/events"),
            ("POST", "/api/v1/organizer/venues")]

PAGES = [
    ("GET", "/manage/o/{a}", "staff"), ("GET", "/manage/o/{a}/venues", "staff"),
    ("POST", "/manage/o/{a}/venues", "admin"),
    ("GET", "/manage/o/{a}/venues/{va}", "staff"),
    ("GET", "/manage/o/{a}/venues/{va}/seats.json", "staff"),
    ("GET", "/manage/o/{a}/members", "admin"), ("POST", "/manage/o/{a}/members", "admin"),
    ("GET", "/manage/o/{a}/events/new", "admin"), ("POST", "/manage/o/{a}/events/new", "admin"),
    ("GET", "/manage/events/{ea}", "staff"), ("GET", "/manage/events/{ea}/edit", "staff"),
    ("POST", "/manage/events/{ea}/edit", "admin"), ("GET", "/manage/events/{ea}/seats", "staff"),
    ("POST", "/manage/events/{ea}/seats", "admin"), ("GET", "/manage/events/{ea}/sale", "staff"),
    ("POST", "/manage/events/{ea}/sale", "admin"), ("GET", "/manage/events/{ea}/orders", "staff"),
    ("GET", "/manage/events/{ea}/orders/{oa}", "staff"), ("GET", "/manage/events/{ea}/live", "staff"),
]


def _done(response):
    """The response read to its end and closed: a streamed export otherwise keeps its
    request context (and a database connection) open in the test client."""
    response.get_data()
    response.close()
    return response


def _fill(template, office, order_id):
    ids = office.ids
    return template.format(a=ids["org_a"], va=ids["venue_a"], ea=ids["event_a"], oa=order_id,
                           staff=office.uid("staff"))


def _body(body, office, order_id):
    if body is None:
        return None
    from tests.back_office import small_layout
    out = {}
    for k, v in body.items():
        if v == "SMALL":
            v = small_layout()
        elif isinstance(v, str) and v.startswith("{"):
            v = int(_fill(v, office, order_id))
        out[k] = v
    return out


@pytest.fixture
def sold(app, office):
    """One paid order of organizer A's event (bought by the buyer)."""
    seats = seat_ids_of(app, office.ids["event_a"], row="A")
    order_id = buy(app, office.uid("buyer"), office.ids["event_a"], seats[:2])
    assert order_id
    return order_id


def test_every_organizer_route_refuses_those_it_must(app, client, office, sold):
    before = fingerprint(app)
    for method, template, body, need in API:
        path, data = _fill(template, office, sold), _body(body, office, sold)
        def call(who, path=path, method=method, data=data):
            return _done(client.open(path, method=method, json=data, headers=office.h(who)))
        assert_error(call(None), 401, "unauthorized")
        for outsider in ("buyer", "other"):
            assert_error(call(outsider), 404, "not_found")
        if need == "admin":
            assert_error(call("staff"), 403, "forbidden")
        else:
            r = call("staff")
            assert r.status_code == 200, (path, r.get_data(as_text=True)[:300])
    assert fingerprint(app) == before, "a refused call changed something"
    for method, path in UNSCOPED:
        r = client.open(path, method=method, json={"name": "x", "timezone": "UTC", "layout": {}},
                        headers=office.h("buyer"))
        error = assert_error(r, 403, "forbidden")
        assert error["details"]["reason"] == "not_a_member"
    assert fingerprint(app) == before


def test_the_admin_gets_through_every_organizer_route(app, client, office, sold):
    for method, template, body, _need in API:
        path, data = _fill(template, office, sold), _body(body, office, sold)
        r = _done(client.open(path, method=method, json=data, headers=office.h("admin")))
        # Some writes are refused on their merits (the tier in use, no such invitation):
        # never for who asked.
        assert r.status_code not in (401, 403), (path, r.get_data(as_text=True)[:300])
        if r.status_code == 404:
            assert "invitations" in path, (path, r.get_data(as_text=True))


def _page_client(app, office, who):
    """A browser-like client signed in with a session cookie (pages read the cookie)."""
    c = app.test_client()
    if who is not None:
        with c.session_transaction() as s:
            s["_user_id"] = str(office.uid(who))
            s["_fresh"] = True
    return c


def test_every_back_office_page_refuses_those_it_must(app, office, sold):
    app.config["WTF_CSRF_ENABLED"] = False   # the refusal must come from the role check
    before = fingerprint(app)
    for method, template, need in PAGES:
        path = _fill(template, office, sold)
        form = {"action": "open", "name": "x", "email": "x@y.test", "role": "admin",
                "section": "Hall", "tier": "Back", "price": "1"}
        r = _page_client(app, office, None).open(path, method=method, data=form)
        assert r.status_code == 302 and "/login" in r.headers["Location"], path
        for outsider in ("buyer", "other"):
            r = _page_client(app, office, outsider).open(path, method=method, data=form)
            assert r.status_code == 404, (outsider, path, r.status_code)
        r = _page_client(app, office, "staff").open(path, method=method, data=form)
        if need == "admin":
            assert r.status_code == 403, (path, r.status_code)
        else:
            assert r.status_code == 200, (path, r.status_code)
    assert fingerprint(app) == before, "a refused page changed something"


def test_a_buyer_sees_no_back_office(app, office):
    r = _page_client(app, office, "buyer").get("/manage")
    assert r.status_code == 200
    assert b"not a member of any organizer" in r.data
    assert b"Back office</a>" not in _page_client(app, office, "buyer").get("/").data
    assert b"Back office</a>" in _page_client(app, office, "staff").get("/").data
