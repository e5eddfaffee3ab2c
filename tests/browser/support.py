"""Helpers of the browser tests: a buyer's browser tab, console watching, axe checks."""
import re
import uuid

from playwright.sync_api import expect

from tests.browser.conftest import AXE

DESKTOP = {"viewport": {"width": 1280, "height": 900}}
PHONE = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2, "is_mobile": True,
         "has_touch": True}
PASSWORD = "correct-horse-battery"
APPROVED = "4242 4242 4242 4242"
DECLINED = "4000 0000 0000 0002"


class BuyerTab:
    """One buyer in their own browser context, signed in through the API (which sets the
    session cookie), with every console error and page error recorded."""

    def __init__(self, browser, base_url, name, device=DESKTOP):
        self.name = name
        self.base_url = base_url
        # A fixed locale and zone, so that prices and dates read the same on every machine.
        self.context = browser.new_context(locale="en-GB", timezone_id="Europe/London", **device)
        self.context.set_default_timeout(15000)
        self.errors = []
        self.page = self.context.new_page()
        self.page.on("console", lambda m: self.errors.append(f"console: {m.text}")
                     if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))
        # The browser's console line for a failed request does not say which: keep them.
        self.failed = []
        self.page.on("response", lambda r: self.failed.append(f"{r.status} {r.url}")
                     if r.status >= 400 else None)
        self.email = f"{name.lower()}-{uuid.uuid4().hex[:8]}@example.test"

    def sign_up(self):
        r = self.context.request.post(self.base_url + "/api/v1/users",
                                      data={"email": self.email, "password": PASSWORD,
                                            "name": self.name})
        assert r.status == 201, r.text()
        return self

    def open_event(self, event_id):
        self.page.goto(f"{self.base_url}/events/{event_id}")
        expect(self.page.locator("#live-status")).to_have_attribute("data-state", "live")
        expect(self.seats().first).to_be_visible()
        return self

    def seats(self):
        return self.page.locator("#seatmap .seat")

    def seat(self, row, number):
        return self.page.locator(f"#seatmap .seat[aria-label^='Section Main, row {row}, seat {number},']")

    def hold(self, *seats):
        for row, number in seats:
            self.seat(row, number).click()
        self.page.get_by_role("button", name="Hold seats").click()
        modal = self.page.locator("#payment-modal")
        expect(modal).to_be_visible()
        expect(modal.get_by_role("heading", name="Pay for your seats")).to_be_visible()
        # Focus moves into the window once it has finished opening.
        expect(modal.get_by_label("Name on card")).to_be_focused()
        return modal

    def fill_card(self, number, name="Ada Buyer", exp="12/34", cvc="123"):
        modal = self.page.locator("#payment-modal")
        modal.get_by_label("Name on card").fill(name)
        modal.get_by_label("Card number").fill(number)
        modal.get_by_label("Expiry (MM/YY)").fill(exp)
        modal.get_by_label("CVC").fill(cvc)

    def proceed(self):
        return self.page.locator("#pay-button")

    def messages(self):
        return self.page.locator("#messages")

    def assert_no_console_errors(self):
        assert not self.errors, f"{self.name}: {self.errors} (failed requests: {self.failed})"

    def close(self):
        self.context.close()


def expect_state(seat, words, timeout=5000):
    """The seat's screen-reader label ends with these words (and its look matches)."""
    expect(seat).to_have_attribute("aria-label", re.compile(rf", {re.escape(words)}$"),
                                   timeout=timeout)


def axe_violations(page, context=None):
    """Serious and critical axe-core violations on the page as it is now."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        # Evaluated, not added as a <script>: a page under a strict CSP refuses an
        # injected inline script (and logs it as an error).
        page.evaluate(AXE.read_text())
    result = page.evaluate(
        "async (ctx) => (await axe.run(ctx || document, {resultTypes: ['violations']})).violations",
        context)
    return [f"{v['id']} ({v['impact']}): {v['help']} at "
            f"{[n['target'] for n in v['nodes']][:5]}"
            for v in result if v["impact"] in ("serious", "critical")]


def assert_accessible(page, what, context=None):
    problems = axe_violations(page, context)
    assert not problems, f"axe on {what}: " + "\n".join(problems)


def strict_csp(context, pages=r".*/(checkin|orders/\d+|orders|login|forgot-password|reset-password/[^/?]+)(\?.*)?$"):
    """Serve these pages with a strict Content-Security-Policy (no inline script but the
    site's import map, by its hash; no inline style attribute): a page that needs more
    logs a 'Refused to ...' console error, which the tab records."""
    import base64
    import hashlib

    def handle(route):
        response = route.fetch()
        body = response.text()
        hashes = [base64.b64encode(hashlib.sha256(m.encode()).digest()).decode()
                  for m in re.findall(r'<script type="importmap"[^>]*>(.*?)</script>', body, re.S)]
        policy = ("default-src 'self'; script-src 'self' "
                  + " ".join(f"'sha256-{h}'" for h in hashes)
                  + "; style-src 'self'; img-src 'self' data:; connect-src 'self' ws: wss:;"
                  " media-src 'self' blob: mediastream:; object-src 'none'; base-uri 'none';"
                  " frame-ancestors 'none'; form-action 'self'")
        route.fulfill(response=response, body=body,
                      headers=dict(response.headers, **{"content-security-policy": policy}))
    context.route(re.compile(pages), handle)
