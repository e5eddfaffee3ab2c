"""Every page under the Content-Security-Policy, in Chromium: zero violations.

Violations are caught twice: the `securitypolicyviolation` DOM event (recorded by
an init script, which the CSP does not govern) and Chromium's console messages.
The test also plants an inline script once, to prove a violation would be seen.
"""
import re

import pytest
from playwright.sync_api import expect

from tests.browser.support import APPROVED, BuyerTab
from tests.conftest import create_event, ops_command

RECORD_VIOLATIONS = """
window.__csp = [];
document.addEventListener('securitypolicyviolation', (e) => {
  window.__csp.push(`${e.violatedDirective} blocked ${e.blockedURI || 'inline'} at ${e.sourceFile}:${e.lineNumber}`);
});
"""


class Watched(BuyerTab):
    """A buyer tab that also records CSP violations and checks each page's headers."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.context.add_init_script(RECORD_VIOLATIONS)
        self.console = []
        self.page.on("console", lambda m: self.console.append(m.text))
        self.visited = []

    def visit(self, path):
        response = self.page.goto(self.base_url + path)
        self.check_headers(path, response)
        return response

    def check_headers(self, what, response):
        headers = response.headers
        csp = headers.get("content-security-policy", "")
        assert csp, f"{what}: no Content-Security-Policy"
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp, csp
        assert "frame-ancestors 'none'" in csp, csp
        assert re.search(r"script-src 'self' 'nonce-[A-Za-z0-9_-]{16,}'", csp), csp
        assert headers.get("x-content-type-options") == "nosniff", what
        assert headers.get("referrer-policy") == "strict-origin-when-cross-origin", what
        self.visited.append(what)

    def violations(self):
        seen = list(self.page.evaluate("window.__csp || []"))
        seen += [m for m in self.console if "Content Security Policy" in m]
        return seen


@pytest.fixture
def site(embedded_site):
    return embedded_site()


def create_waiting_room_event(url):
    out = ops_command(url, "booking", "create-event", "--name", "Queue night",
                      "--venue", "Queue Hall", "--starts-at", "2030-01-01T19:00:00Z",
                      "--rows", "2", "--seats-per-row", "4", "--price-cents", "3000",
                      "--waiting-room",
                      # On sale later: the page stays in the queue instead of going to the seats.
                      "--on-sale-at", "2029-12-01T10:00:00Z")
    return int(out.strip().splitlines()[-1])


def test_every_page_runs_under_the_csp_with_no_violation(browser, site, clean_db, screenshots):
    event_id = create_event(clean_db, rows=2, per_row=6, price=4500, name="CSP night")
    room_event = create_waiting_room_event(clean_db)

    visitor = Watched(browser, site.url, "Visitor")
    try:
        for path in ("/", f"/events/{event_id}", "/login", "/signup"):
            visitor.visit(path)
            visitor.page.wait_for_load_state("networkidle")
            assert not visitor.violations(), (path, visitor.violations())
        # The sign-up form posts to the same origin (form-action 'self').
        visitor.page.get_by_label("Email").fill(visitor.email)
        visitor.page.get_by_label("Password", exact=True).fill("correct-horse-battery")
        with visitor.page.expect_navigation():
            visitor.page.get_by_role("button", name=re.compile("Sign up|Create")).click()
        assert not visitor.violations(), visitor.violations()
    finally:
        visitor.close()

    buyer = Watched(browser, site.url, "Buyer").sign_up()
    try:
        buyer.visit(f"/events/{event_id}")
        expect(buyer.page.locator("#live-status")).to_have_attribute("data-state", "live")
        # The payment window, opened, then paid: the order page.
        buyer.hold(("A", 1))
        assert not buyer.violations(), buyer.violations()
        buyer.fill_card(APPROVED)
        with buyer.page.expect_response(re.compile(r"/orders/\d+\?new=1$")) as order:
            buyer.proceed().click()
        buyer.check_headers("order page", order.value)
        expect(buyer.page.get_by_role("heading", name="Thank you! Your seats are booked.")
               ).to_be_visible()
        assert not buyer.violations(), buyer.violations()

        buyer.visit("/orders")
        expect(buyer.page.get_by_role("heading", name=re.compile(r"Order \d+ Paid"))).to_be_visible()
        assert not buyer.violations(), buyer.violations()

        buyer.visit(f"/events/{room_event}/waiting-room")
        expect(buyer.page.locator("#queue-state")).to_contain_text("You are in.")
        buyer.page.screenshot(path=str(screenshots / "csp-waiting-room-desktop.png"))
        assert not buyer.violations(), buyer.violations()

        # The watch itself: an inline script planted in the page is refused and seen.
        buyer.page.evaluate("""() => { const s = document.createElement('script');
            s.textContent = 'window.__ran = 1'; document.body.append(s); }""")
        buyer.page.wait_for_function("window.__csp.length > 0")
        assert buyer.page.evaluate("window.__ran") is None
        assert any("script-src" in v for v in buyer.violations())
    finally:
        buyer.close()


def test_the_organizers_pages_run_under_the_csp_with_no_violation(browser, site, clean_db):
    """The back office and the door scanner too: every /manage page of an organizer with
    one event, and /checkin for it."""
    staff = Watched(browser, site.url, "Organizer").sign_up()
    try:
        org = int(ops_command(clean_db, "booking", "organizer", "create", "--name", "CSP Live",
                              "--admin-email", staff.email).strip().splitlines()[-1])
        out = ops_command(clean_db, "booking", "create-event", "--name", "CSP gala",
                          "--venue", "CSP Hall", "--starts-at", "2030-01-01T19:00:00Z",
                          "--rows", "2", "--seats-per-row", "4", "--price-cents", "3000",
                          "--organizer", str(org))
        event = int(out.strip().splitlines()[-1])
        pages = ["/manage", f"/manage/o/{org}", f"/manage/o/{org}/venues",
                 f"/manage/o/{org}/members", f"/manage/o/{org}/events/new",
                 f"/manage/events/{event}", f"/manage/events/{event}/edit",
                 f"/manage/events/{event}/seats", f"/manage/events/{event}/sale",
                 f"/manage/events/{event}/orders", f"/manage/events/{event}/live",
                 f"/checkin?event={event}"]
        for path in pages:
            response = staff.visit(path)
            assert response.status == 200, (path, response.status)
            staff.page.wait_for_load_state("networkidle")
            assert not staff.violations(), (path, staff.violations())
        assert len(staff.visited) == len(pages)
    finally:
        staff.close()


def test_api_and_static_responses_carry_the_headers(site):
    import requests
    for path in ("/api/v1/events", "/static/css/app.css", "/healthz", "/nope"):
        r = requests.get(site.url + path, timeout=5)
        assert "frame-ancestors 'none'" in r.headers["Content-Security-Policy"], path
        assert r.headers["X-Content-Type-Options"] == "nosniff", path


def test_error_pages_are_pages_under_the_csp(browser, site, clean_db, screenshots):
    """A person who follows a wrong link gets a page (with the CSP, no violation, readable on
    a phone and a desktop), never the API's JSON; the API and JSON clients keep JSON."""
    import requests
    from tests.browser.support import PHONE, assert_accessible

    visitor = Watched(browser, site.url, "Visitor")
    try:
        for path in ("/events/999999", "/events/abc", "/orders/abc", "/nope"):
            response = visitor.visit(path)
            assert response.status == 404, (path, response.status)
            assert response.headers["content-type"].startswith("text/html"), path
            expect(visitor.page.get_by_role("heading", level=1)).to_contain_text("could not find")
            expect(visitor.page.get_by_role("link", name="See all events")).to_be_visible()
            assert not visitor.violations(), (path, visitor.violations())
        assert_accessible(visitor.page, "the 404 page")
        visitor.page.set_viewport_size({"width": 1280, "height": 800})
        visitor.page.screenshot(path=str(screenshots / "error-404-desktop.png"))
        # GET /logout signs nobody out and shows no JSON: a signed-out visitor lands on the events.
        visitor.visit("/logout")
        assert visitor.page.url.rstrip("/") == site.url
        assert not visitor.violations(), visitor.violations()
    finally:
        visitor.close()

    phone = Watched(browser, site.url, "Phone", device=PHONE)
    try:
        phone.visit("/nope")
        expect(phone.page.get_by_role("heading", level=1)).to_be_visible()
        assert phone.page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        phone.page.screenshot(path=str(screenshots / "error-404-phone.png"))
        assert not phone.violations(), phone.violations()
    finally:
        phone.close()

    buyer = Watched(browser, site.url, "Buyer").sign_up()
    try:
        response = buyer.visit("/orders/999999")
        assert response.status == 404
        expect(buyer.page.get_by_role("heading", level=1)).to_have_text(
            "We could not find that order")
        # GET /logout while signed in: the account page, with both ways to sign out.
        buyer.visit("/logout")
        expect(buyer.page.get_by_role("heading", name="My account")).to_be_visible()
        assert_accessible(buyer.page, "the account page")
        buyer.page.screenshot(path=str(screenshots / "account-desktop.png"))
        assert not buyer.violations(), buyer.violations()
        with buyer.page.expect_navigation():
            buyer.page.get_by_role("button", name="Log out everywhere").click()
        expect(buyer.page.get_by_text("You are signed out on every device.")).to_be_visible()
        assert buyer.context.request.get(site.url + "/api/v1/orders").status == 401
    finally:
        buyer.close()

    # Programs keep the contract's JSON: the API, and any client that asks for JSON.
    for path, accept in (("/api/v1/nope", "text/html"), ("/nope", "application/json"),
                         ("/nope", "*/*"), ("/orders/abc", None)):
        r = requests.get(site.url + path, timeout=5,
                         headers={"Accept": accept} if accept else {})
        assert r.status_code == 404, path
        assert r.json()["error"]["code"] == "not_found", (path, accept)
