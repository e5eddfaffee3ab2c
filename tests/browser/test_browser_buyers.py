"""Two buyers in two browser contexts on one event, against real web processes.

Each story runs twice: against one web process in the embedded mode, and
against two web processes behind the Redis message queue with a Celery worker
(buyer A on one, buyer B on the other).
"""
import re

import pytest
from playwright.sync_api import expect

from tests.browser.support import (APPROVED, DECLINED, PHONE, BuyerTab, assert_accessible,
                                   expect_state)
from tests.conftest import create_event

# The one timing promise: a hold shows on the other buyer's map within a second.
WITHIN_A_SECOND = 1000


@pytest.fixture(params=["embedded", "two-webs"])
def sites(request, cluster, embedded_site):
    """(URL for buyer A, URL for buyer B): the same process, or two behind Redis."""
    if request.param == "embedded":
        web = embedded_site()
        return web.url, web.url
    cluster.worker(concurrency=1)
    return cluster.web().url, cluster.web().url


@pytest.fixture
def event_id(clean_db):
    return create_event(clean_db, rows=3, per_row=8, price=4500, name="Browser night")


@pytest.fixture
def tabs(browser):
    """Makes BuyerTabs; closes them afterwards."""
    made = []

    def make(base_url, name, **kw):
        tab = BuyerTab(browser, base_url, name, **kw).sign_up()
        made.append(tab)
        return tab
    yield make
    for tab in made:
        tab.close()


def test_holds_show_live_to_the_other_buyer(sites, event_id, tabs, screenshots, request):
    url_a, url_b = sites
    a = tabs(url_a, "Ann").open_event(event_id)
    b = tabs(url_b, "Bob").open_event(event_id)

    # A holds a seat: B's map shows it held within a second.
    modal = a.hold(("A", 3))
    expect(modal.locator("#held-seats")).to_contain_text("Section Main, row A, seat 3, €45.00")
    expect(modal.locator("#hold-total")).to_have_text("€45.00")
    expect(modal.locator("#countdown")).to_have_text(re.compile(r"^[45]:\d\d$"))
    expect_state(b.seat("A", 3), "held by someone else", timeout=WITHIN_A_SECOND)
    expect_state(a.seat("A", 3), "held by you")
    assert_accessible(a.page, "the payment window")

    # B tries the seat A holds and is told, in words, that it is taken.
    # (force: Playwright will not click an aria-disabled button, but a person can.)
    b.seat("A", 3).click(force=True)
    expect(b.messages()).to_contain_text("row A, seat 3 is taken")
    expect_state(b.seat("A", 3), "held by someone else")

    # A seat B has chosen that A then takes: B's choice drops it, and B is told.
    b.seat("B", 1).click()
    expect_state(b.seat("B", 1), "selected")
    a.page.get_by_role("button", name="Cancel", exact=True).click()
    expect(modal).to_be_hidden()
    expect_state(b.seat("A", 3), "available", timeout=WITHIN_A_SECOND)
    expect_state(a.seat("A", 3), "available")
    expect(a.messages()).to_contain_text("released")
    a.hold(("B", 1))
    expect_state(b.seat("B", 1), "held by someone else", timeout=WITHIN_A_SECOND)
    expect(b.messages()).to_contain_text("row B, seat 1 was just taken by someone else")
    expect(b.page.locator("#selection-summary")).to_have_text("No seats selected.")
    assert_accessible(b.page, "the event page with a held seat")

    # Closing the window with its X releases too.
    a.page.get_by_role("button", name="Close and release the seats").click()
    expect_state(b.seat("B", 1), "available", timeout=WITHIN_A_SECOND)

    # More than the limit cannot be chosen, and the page says why.
    for n in range(1, 9):
        b.seat("C", n).click()
    b.seat("B", 8).click()
    expect(b.messages()).to_contain_text("You can choose up to 8 seats in one order.")
    expect(b.page.locator("#selection-summary")).to_contain_text("8 seats selected")
    a.assert_no_console_errors()
    b.assert_no_console_errors()


def test_payment_story(sites, event_id, tabs, screenshots, request):
    url_a, url_b = sites
    embedded = request.node.callspec.params["sites"] == "embedded"
    a = tabs(url_a, "Ann").open_event(event_id)
    b = tabs(url_b, "Bob").open_event(event_id)

    modal = a.hold(("A", 4), ("A", 5))
    expect_state(b.seat("A", 4), "held by someone else", timeout=WITHIN_A_SECOND)

    # Inline validation before anything is sent.
    a.fill_card("4242 4242 4242 4241", exp="01/20", cvc="12")
    a.proceed().click()
    expect(modal.locator("#card-number-error")).to_have_text("This card number is not valid. Check it for typos.")
    expect(modal.locator("#card-exp-error")).to_have_text("This card has expired.")
    expect(modal.locator("#card-cvc-error")).to_have_text("Enter the 3-digit code from the card.")

    # A declined card says why; the hold stays, so another card can be tried.
    # A double click sends one payment: count what leaves the page.
    a.page.evaluate("""() => {
        const s = window.boxoffice.socket; window.paySent = 0;
        const emit = s.emit.bind(s);
        s.emit = (ev, ...rest) => { if (ev === 'pay') window.paySent += 1; return emit(ev, ...rest); };
    }""")
    a.fill_card(DECLINED)
    a.proceed().dblclick()
    expect(modal.locator("#payment-error")).to_have_text(
        "The card was declined by its bank. Nothing was charged. Please try another card.")
    assert a.page.evaluate("window.paySent") == 1
    expect(a.proceed()).to_be_enabled()
    expect_state(b.seat("A", 4), "held by someone else")
    assert_accessible(a.page, "the payment window with a declined card")
    if embedded:
        a.page.screenshot(path=str(screenshots / "payment-window-desktop.png"))

    # The approved card: the confirmation page, and B sees the seats sold.
    a.fill_card(APPROVED)
    a.proceed().click()
    expect(a.page).to_have_url(re.compile(r"/orders/\d+\?new=1$"))
    expect(a.page.get_by_role("heading", name="Thank you! Your seats are booked.")).to_be_visible()
    expect(a.page.get_by_test_id("order-seats")).to_contain_text("Main A4")
    expect(a.page.get_by_test_id("order-seats")).to_contain_text("Main A5")
    expect(a.page.get_by_test_id("order-total")).to_have_text("€90.00")
    expect(a.page.get_by_test_id("order-card")).to_have_text("Paid with Visa ending in 4242")
    assert a.page.evaluate("window.paySent") is None  # a new page: nothing counted twice
    expect_state(b.seat("A", 4), "sold")
    expect_state(b.seat("A", 5), "sold")
    assert_accessible(a.page, "the confirmation page")
    if embedded:
        a.page.screenshot(path=str(screenshots / "confirmation-desktop.png"), full_page=True)

    a.page.get_by_role("link", name="My orders", exact=True).click()
    expect(a.page.get_by_test_id("order-list")).to_contain_text("Browser night")
    expect(a.page.get_by_test_id("order-list")).to_contain_text("€90.00 · Visa ending in 4242")
    assert_accessible(a.page, "my orders")

    # A holds one more; B's map now shows every state but "held by you".
    a.open_event(event_id)
    a.hold(("A", 7))
    expect_state(b.seat("A", 7), "held by someone else", timeout=WITHIN_A_SECOND)

    # B's view of it all: sold seats look sold, and a click on one says so.
    b.seat("A", 4).click(force=True)
    expect(b.messages()).to_contain_text("row A, seat 4 is sold")
    b.seat("C", 2).click()
    b.seat("C", 3).click()
    b.seat("C", 3).hover()
    expect(b.page.locator("#seat-tip")).to_have_text("Main, row C, seat 3 · €45.00 · selected")
    if embedded:
        b.page.screenshot(path=str(screenshots / "event-page-desktop.png"), full_page=True)
    assert_accessible(b.page, "the event page with sold seats")
    a.assert_no_console_errors()
    b.assert_no_console_errors()


def test_phone_screens(embedded_site, event_id, tabs, screenshots):
    site = embedded_site()
    phone = tabs(site.url, "Pat", device=PHONE).open_event(event_id)
    phone.seat("B", 4).click()
    phone.seat("B", 5).click()
    # The Hold button stays in reach on a small screen, whatever the scroll.
    expect(phone.page.get_by_role("button", name="Hold seats")).to_be_in_viewport()
    phone.page.screenshot(path=str(screenshots / "event-page-phone.png"), full_page=True)
    assert_accessible(phone.page, "the event page on a phone")
    modal = phone.hold()
    phone.fill_card(APPROVED)
    phone.page.screenshot(path=str(screenshots / "payment-window-phone.png"))
    phone.proceed().click()
    expect(phone.page.get_by_role("heading", name="Thank you! Your seats are booked.")).to_be_visible()
    phone.page.screenshot(path=str(screenshots / "confirmation-phone.png"), full_page=True)
    phone.page.goto(site.url + "/")
    expect(phone.page.get_by_test_id("seats-left")).to_have_text("22 of 24 seats left")
    assert_accessible(phone.page, "the event list on a phone")
    phone.assert_no_console_errors()
    del modal


def test_countdown_closes_the_window(embedded_site, event_id, tabs, screenshots):
    site = embedded_site(HOLD_TTL_SECONDS="8")
    a = tabs(site.url, "Ann").open_event(event_id)
    modal = a.hold(("C", 2))
    # Counting down from the 8 s the hold has (how much is left when the window first
    # shows depends on how fast the hold was answered).
    expect(modal.locator("#countdown")).to_have_text(re.compile(r"^0:0[1-8]$"))
    expect(modal).to_be_hidden(timeout=12000)
    expect(a.messages()).to_contain_text("Your hold ran out, so the seats were released.")
    # Shown free by the page itself when its countdown ends, whatever the sweep does.
    expect_state(a.seat("C", 2), "available")
    a.page.screenshot(path=str(screenshots / "hold-ran-out-desktop.png"))
    a.assert_no_console_errors()


def test_a_run_out_hold_shows_free_at_once_when_the_page_clock_lags(embedded_site, event_id,
                                                                    tabs, screenshots):
    """The page estimates the server's clock from the time rendered into it; a script
    that started late (a slow phone, a tab opened in the background) estimates it
    late. Here the estimate is 30 s behind and nothing sweeps expired holds: when the
    countdown (counted from the grant's arrival) ends, the buyer's seat shows free at
    once, not "held by someone else" until the estimate catches up."""
    site = embedded_site(HOLD_TTL_SECONDS="4", SWEEP_INTERVAL_SECONDS="600")
    a = tabs(site.url, "Ann", device=PHONE)

    def late_clock(route):
        response = route.fetch()
        body = re.sub(r'"server_now": *"([^"]+)"',
                      lambda m: '"server_now": "%s"' % _earlier(m.group(1), 30), response.text())
        assert body != response.text(), "the page no longer carries server_now"
        route.fulfill(response=response, body=body)

    # A page answered by the test (not by the network) counts as outside the local
    # network for Chromium: allow its socket to the local server.
    a.context.grant_permissions(["local-network-access"])
    a.page.route(f"{site.url}/events/{event_id}", late_clock)
    a.open_event(event_id)
    modal = a.hold(("C", 2))
    expect(modal).to_be_hidden(timeout=10000)
    expect(a.messages()).to_contain_text("Your hold ran out, so the seats were released.")
    expect_state(a.seat("C", 2), "available", timeout=1000)
    a.page.screenshot(path=str(screenshots / "hold-ran-out-phone.png"))
    a.assert_no_console_errors()


def _earlier(iso, seconds):
    from datetime import datetime, timedelta
    at = datetime.fromisoformat(iso.replace("Z", "+00:00")) - timedelta(seconds=seconds)
    return at.isoformat(timespec="milliseconds")


def test_seat_versions_redraw_a_hold_that_ran_out_between_ticks(embedded_site, event_id, tabs):
    """SeatVersions (static/js/live.js), run in the page: a seat whose hold ran out
    and whose release arrives before the page's next lapse() is reported changed
    (the page redraws it), and expire() frees only seats still on that hold."""
    site = embedded_site()
    a = tabs(site.url, "Ann").open_event(event_id)
    got = a.page.evaluate("""async () => {
      const { SeatVersions } = await import("app/live");
      let t = 1000;
      const at = (ms) => new Date(ms).toISOString();
      const v = new SeatVersions(() => t);
      v.apply([{ id: 1, status: "available", version: 1 }, { id: 2, status: "available", version: 1 }]);
      v.apply([{ id: 1, status: "held", version: 2, expires_at: at(5000) }]);
      t = 5200;  // run out; the page's tick has not asked lapse() yet
      const released = v.apply([{ id: 1, status: "available", version: 3 }]);
      const lapsedAfter = v.lapse();
      t = 10000;
      v.apply([{ id: 1, status: "held", version: 4, expires_at: at(20000) },
               { id: 2, status: "held", version: 2, expires_at: at(40000) }]);
      const expired = v.expire([1, 2], 20000);
      return { released, lapsedAfter, expired, one: v.status(1), two: v.status(2),
               lapsedLater: v.lapse() };
    }""")
    assert got == {"released": [1], "lapsedAfter": [], "expired": [1], "one": "available",
                   "two": "held", "lapsedLater": []}, got


def test_reconnect_redraws_from_the_snapshot(embedded_site, event_id, tabs):
    site = embedded_site()
    a = tabs(site.url, "Ann").open_event(event_id)
    b = tabs(site.url, "Bob").open_event(event_id)
    status = b.page.locator("#live-status")
    expect(status).to_contain_text("Live")

    # B loses the connection; the page says so plainly.
    b.context.set_offline(True)
    b.page.evaluate("window.boxoffice.socket.io.engine.close()")
    expect(status).to_have_attribute("data-state", "down")
    expect(status).to_contain_text("Connection lost. Reconnecting…")
    assert_accessible(b.page, "the event page while offline")

    # A holds a seat while B cannot hear about it.
    a.hold(("A", 1))
    expect_state(b.seat("A", 1), "available")

    # Back online: B re-joins and redraws from the snapshot.
    b.context.set_offline(False)
    expect(status).to_have_attribute("data-state", "live", timeout=15000)
    expect_state(b.seat("A", 1), "held by someone else")
    a.assert_no_console_errors()
    # B's own errors while offline are the browser reporting failed reconnects.
    assert all("ERR_INTERNET_DISCONNECTED" in e or "WebSocket" in e for e in b.errors), b.errors


def test_event_list_and_keyboard(embedded_site, event_id, tabs):
    site = embedded_site()
    a = tabs(site.url, "Ann").open_event(event_id)
    b = tabs(site.url, "Bob")
    b.page.goto(site.url + "/")
    card = b.page.locator(f"[data-event-id='{event_id}']")
    expect(card).to_contain_text("Browser night")
    expect(card).to_contain_text("Test Hall")
    # 19:00 UTC in the event's zone (the venue's zone is UTC here), with the zone named.
    expect(card.locator("time")).to_have_text(re.compile(r"Tue, 1 Jan 2030, 19:00 UTC"))
    expect(card).to_contain_text("€45.00")
    expect(b.page.locator("#live-status")).to_have_attribute("data-state", "live")
    seats_left = card.get_by_test_id("seats-left")
    expect(seats_left).to_have_text("24 of 24 seats left")
    assert_accessible(b.page, "the event list")
    # Dates show in the event's own zone, named (the test venue's zone is UTC).
    assert b.page.evaluate(
        "async () => (await import('app/common')).formatDate('2030-01-01T19:00:00Z', 'Europe/Amsterdam')"
    ) == "Tue, 1 Jan 2030, 20:00 CET"

    a.hold(("A", 1), ("A", 2))
    expect(seats_left).to_have_text("22 of 24 seats left")

    # The whole map is one tab stop; arrows move, Enter selects, the tip shows the price.
    b.page.goto(f"{site.url}/events/{event_id}")
    expect(b.page.locator("#live-status")).to_have_attribute("data-state", "live")
    # The tab stop starts on the front row's seat nearest the stage's centre.
    stop = b.page.locator("#seatmap .seat[tabindex='0']")
    expect(stop).to_have_count(1)
    expect(stop).to_have_attribute("aria-label", re.compile(r"^Section Main, row A, seat [45],"))
    stop.focus()
    b.page.keyboard.press("Home")
    first = b.seat("A", 1)
    expect(first).to_be_focused()
    expect(first).to_have_attribute("tabindex", "0")
    b.page.keyboard.press("ArrowRight")
    b.page.keyboard.press("ArrowRight")
    b.page.keyboard.press("ArrowDown")
    focused = b.seat("B", 3)
    expect(focused).to_be_focused()
    expect(b.page.locator("#seat-tip")).to_have_text("Main, row B, seat 3 · €45.00 · available")
    b.page.keyboard.press("Enter")
    expect_state(focused, "selected")
    b.page.keyboard.press("End")
    expect(b.seat("B", 8)).to_be_focused()
    b.page.keyboard.press("ArrowUp")
    b.page.keyboard.press("Home")
    expect(b.seat("A", 1)).to_be_focused()
    expect(b.page.locator("#seat-tip")).to_have_text("Main, row A, seat 1 · €45.00 · held by someone else")
    b.page.keyboard.press(" ")
    expect(b.messages()).to_contain_text("Main, row A, seat 1 is taken")
    a.assert_no_console_errors()
    b.assert_no_console_errors()


def test_server_refusals_read_as_sentences(embedded_site, event_id, tabs):
    site = embedded_site()
    a = tabs(site.url, "Ann").open_event(event_id)
    b = tabs(site.url, "Bob").open_event(event_id)

    # B chooses a seat but misses the news that A took it (its seat feed is cut here),
    # so the refusal comes from the server: B reads a sentence, and the seat is unchosen.
    b.page.evaluate("window.boxoffice.socket.off('seats_changed')")
    b.seat("C", 5).click()
    a.hold(("C", 5))
    b.page.get_by_role("button", name="Hold seats").click()
    expect(b.messages()).to_have_text(
        "Sorry, a seat you chose was taken a moment ago. Please choose another seat.")
    expect(b.page.locator("#selection-summary")).to_have_text("No seats selected.")
    expect(b.page.locator("#payment-modal")).to_be_hidden()

    # Load shedding and rate limits, as the page words them: no codes, no jargon.
    texts = b.page.evaluate("""async () => {
        const { errorText } = await import('app/common');
        return [
          errorText({code: 'busy', message: 'x', details: {retry_after_s: 2}}),
          errorText({code: 'rate_limited', message: 'x', details: {}}),
          errorText({code: 'limit_exceeded', details: {limit: 'open_holds', max: 2}}),
          errorText({code: 'payment_declined', details: {reason: 'insufficient_funds'}}),
          errorText({code: 'something_new'}),
        ];
    }""")
    assert texts == [
        "The box office is very busy right now. Please try again in about 2 seconds.",
        "You are going a little fast. Please wait a moment and try again.",
        "You already have 2 seat holds open. Pay for them or let them go first.",
        "The card was declined because of insufficient funds. Nothing was charged. "
        "Please try another card.",
        "Something went wrong on our side. Please try again.",
    ]
    a.assert_no_console_errors()
    b.assert_no_console_errors()


def test_reload_brings_the_payment_window_back(embedded_site, event_id, tabs):
    site = embedded_site()
    a = tabs(site.url, "Ann").open_event(event_id)
    a.hold(("B", 6))
    a.page.reload()
    modal = a.page.locator("#payment-modal")
    expect(modal).to_be_visible()
    expect(modal.locator("#held-seats")).to_contain_text("row B, seat 6")
    expect(modal.locator("#countdown")).to_have_text(re.compile(r"^[45]:\d\d$"))
    a.page.get_by_role("button", name="Cancel", exact=True).click()
    expect_state(a.seat("B", 6), "available")
    a.page.reload()
    expect(a.seats().first).to_be_visible()
    expect(a.page.locator("#live-status")).to_have_attribute("data-state", "live")
    expect(modal).to_be_hidden()
    a.assert_no_console_errors()
