"""Answers that never come, in the browser: the page re-sends a request whose result
was lost, and the payment window says when the connection is down."""
import re

import pytest
from playwright.sync_api import expect

from tests.browser.support import PHONE, BuyerTab, expect_state
from tests.conftest import REDIS_URL, create_event
from tests.conftest import through as _through

SLOW = "4000 0000 0000 3220"   # charged at once, answered after 5 s (docs/API.md)
DESKTOP_800 = {"viewport": {"width": 1280, "height": 800}}


@pytest.fixture
def event_id(clean_db):
    return create_event(clean_db, rows=3, per_row=8, price=4500, name="Browser night")


@pytest.fixture
def tabs(browser):
    made = []

    def make(base_url, name, **kw):
        tab = BuyerTab(browser, base_url, name, **kw).sign_up()
        made.append(tab)
        return tab
    yield make
    for tab in made:
        tab.close()


def test_page_resends_a_request_whose_result_was_lost(cluster, event_id, tabs, redis_proxy):
    """The worker's results never reach Redis (its path is cut): the page's hold is
    decided all the same, and the page gets the answer by sending the request again
    after a few seconds (the server answers it from its ledger)."""
    cluster.worker(concurrency=1, extra_env={
        "SOCKETIO_MESSAGE_QUEUE_URL": _through(redis_proxy, REDIS_URL)})
    web = cluster.web()
    redis_proxy.cut()
    a = tabs(web.url, "Ann").open_event(event_id)
    a.seat("A", 1).click()
    a.page.get_by_role("button", name="Hold seats").click()
    # No answer at first: the result was published to nobody.
    a.page.wait_for_timeout(2000)
    modal = a.page.locator("#payment-modal")
    expect(modal).to_be_hidden()
    # Re-sent after 5 s, answered from the ledger: the payment window opens.
    expect(modal).to_be_visible(timeout=15000)
    expect(modal.locator("#held-seats li")).to_have_count(1)
    expect_state(a.seat("A", 1), "held by you")
    a.assert_no_console_errors()


@pytest.mark.parametrize("device,label", [(PHONE, "phone"), (DESKTOP_800, "desktop")])
def test_payment_window_says_when_the_connection_drops(embedded_site, event_id, tabs,
                                                       screenshots, device, label):
    """The connection drops while a payment is on its way: the window says so (the
    page's banner is behind it), Pay explains what it waits for; back online, the
    payment is sent again and finishes (charged once)."""
    site = embedded_site()
    a = tabs(site.url, "Ann", device=device).open_event(event_id)
    modal = a.hold(("A", 2))
    notice = modal.locator("#payment-connection")
    pay = a.proceed()
    expect(notice).to_be_hidden()

    # Offline with the window open and nothing sent: Pay waits for the connection.
    a.context.set_offline(True)
    a.page.evaluate("window.boxoffice.socket.io.engine.close()")
    expect(notice).to_be_visible()
    expect(notice).to_contain_text("Connection lost. Reconnecting…")
    expect(notice).to_contain_text("You can pay once the connection is back")
    expect(pay).to_be_disabled()
    expect(pay).to_contain_text("Waiting for the connection")
    a.page.screenshot(path=str(screenshots / f"payment-offline-{label}.png"))

    a.context.set_offline(False)
    expect(notice).to_be_hidden(timeout=15000)
    expect(pay).to_be_enabled()

    # A slow payment (answered after 5 s) in flight when the connection drops.
    a.fill_card(SLOW)
    pay.click()
    expect(pay).to_contain_text("Paying…")
    a.context.set_offline(True)
    a.page.evaluate("window.boxoffice.socket.io.engine.close()")
    expect(notice).to_contain_text("Your payment is kept and is sent again")
    expect(notice).to_contain_text("charged at most once")
    expect(pay).to_contain_text("Paying… waiting for the connection")
    a.page.screenshot(path=str(screenshots / f"payment-offline-paying-{label}.png"))

    # Back: the page re-sends the payment (same request_id and key) and the order opens.
    a.page.wait_for_timeout(6000)   # the payment finished meanwhile; its result was lost
    a.context.set_offline(False)
    expect(a.page).to_have_url(re.compile(r"/orders/\d+"), timeout=20000)
    errors = [e for e in a.errors
              if "ERR_INTERNET_DISCONNECTED" not in e and "WebSocket" not in e]
    assert not errors, errors
