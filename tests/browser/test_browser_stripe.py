"""Paying with Stripe in Chromium: the card typed into Stripe.js's fields, 3-D Secure.

localstripe serves its stand-in for Stripe.js (/js.stripe.com/v3/) and the API
it talks to; the web process runs with PAYMENT_PROCESSOR=stripe pointed at it.
The card goes from the page to localstripe only: the test watches every
request the page sends to the box office and checks no card number is in any.
"""
import json
import os
import re
import subprocess
import sys

import pytest
from playwright.sync_api import expect

from tests.browser.support import PHONE, BuyerTab, assert_accessible, expect_state
from tests.conftest import SECRET, create_event
from tests.harness import ROOT
from tests.stripe_server import DECLINED, GOOD, THREE_DS, LocalStripe, stripe_config


@pytest.fixture(scope="module")
def localstripe(tmp_path_factory):
    server = LocalStripe(tmp_path_factory.mktemp("localstripe"))
    yield server
    server.stop()


def _env(server):
    return {k: str(v) for k, v in stripe_config(server).items()}


@pytest.fixture
def site(embedded_site, localstripe):
    return embedded_site(**_env(localstripe))


@pytest.fixture
def event_id(clean_db):
    return create_event(clean_db, rows=3, per_row=8, price=4500, name="Stripe night")


def _block_scoped(route):
    """localstripe's stand-in for Stripe.js declares a top-level `class Element`, which
    shadows the DOM's Element for every script of the page (Bootstrap's selector
    engine breaks). Served inside a block, the class stays its own; the file is
    otherwise unchanged, and still finds its API from its own address."""
    response = route.fetch()
    route.fulfill(response=response, body="{\n" + response.text() + "\n}\n")


@pytest.fixture
def tabs(browser):
    made = []

    def make(base_url, name, **kw):
        tab = BuyerTab(browser, base_url, name, **kw).sign_up()
        tab.context.route("**/js.stripe.com/v3/", _block_scoped)
        made.append(tab)
        return tab
    yield make
    for tab in made:
        tab.close()


def _watch_card_leaks(tab, site_url):
    """Every request body the page sends to the box office (socket frames included)."""
    sent = []
    tab.page.on("request", lambda r: sent.append(r.post_data or "")
                if r.url.startswith(site_url) else None)
    tab.page.on("websocket", lambda ws: ws.on("framesent", lambda f: sent.append(str(f))))
    return sent


def _fill_stripe_card(tab, number, name="Ada Buyer"):
    modal = tab.page.locator("#payment-modal")
    modal.get_by_label("Name on card").fill(name)
    card = modal.locator("#card-element")
    card.locator("input[placeholder=number]").fill(number)
    card.locator("input[placeholder=exp_month]").fill("12")
    card.locator("input[placeholder=exp_year]").fill("31")
    card.locator("input[placeholder=cvc]").fill("123")
    card.locator("input[placeholder=postal_code]").fill("75001")


def _audit(db_url, server):
    env = dict(os.environ, DATABASE_URL=db_url, SECRET_KEY=SECRET, **_env(server))
    env.pop("REDIS_URL", None)
    out = subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", "booking", "audit"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    return out.returncode, json.loads(out.stdout)


def test_stripe_payment_story(site, event_id, tabs, screenshots, localstripe, clean_db):
    a = tabs(site.url, "Ann").open_event(event_id)
    b = tabs(site.url, "Bob").open_event(event_id)
    sent = _watch_card_leaks(a, site.url)

    # A declined card: Stripe's answer in words; the hold stays for another card.
    modal = a.hold(("A", 4), ("A", 5))
    expect(modal.locator("#card-element input[placeholder=number]")).to_be_visible()
    assert modal.get_by_label("Card number").count() == 0, "no card field of ours"
    a.page.screenshot(path=str(screenshots / "stripe-payment-window-desktop.png"))
    _fill_stripe_card(a, DECLINED)
    a.proceed().click()
    expect(modal.locator("#payment-error")).to_have_text(
        "The card was declined by its bank. Nothing was charged. Please try another card.")
    expect(a.proceed()).to_be_enabled()
    expect_state(b.seat("A", 4), "held by someone else")

    # A card that needs 3-D Secure: Stripe.js shows the bank's challenge while the
    # seats stay held; passing it makes the order.
    _fill_stripe_card(a, THREE_DS)
    a.proceed().click()
    challenge = a.page.get_by_role("button", name="Complete authentication")
    expect(challenge).to_be_visible()
    expect(a.proceed().locator(".label")).to_have_text("Waiting for your bank…")
    expect_state(b.seat("A", 4), "held by someone else")
    a.page.screenshot(path=str(screenshots / "stripe-3ds-challenge-desktop.png"))
    # localstripe's stand-in challenge is an unstyled box under the window's backdrop
    # (Stripe's own is a frame above everything): click it where it is.
    challenge.dispatch_event("click")
    expect(a.page).to_have_url(re.compile(r"/orders/\d+\?new=1$"))
    expect(a.page.get_by_test_id("order-total")).to_have_text("€90.00")
    expect(a.page.get_by_test_id("order-card")).to_have_text("Paid with Visa ending in 3155")
    expect_state(b.seat("A", 4), "sold")
    assert_accessible(a.page, "the confirmation page after Stripe")

    # A plain approved card on another hold.
    a.open_event(event_id)
    a.hold(("B", 1))
    _fill_stripe_card(a, GOOD)
    a.proceed().click()
    expect(a.page).to_have_url(re.compile(r"/orders/\d+\?new=1$"))
    expect(a.page.get_by_test_id("order-card")).to_have_text("Paid with Visa ending in 4242")

    for number in (DECLINED, THREE_DS, GOOD):
        assert not any(number in body for body in sent), "a card number reached the box office"
    a.assert_no_console_errors()
    b.assert_no_console_errors()
    code, report = _audit(clean_db, localstripe)
    assert code == 0 and report["problems"] == [], report


def test_stripe_payment_window_on_a_phone(site, event_id, tabs, screenshots):
    phone = tabs(site.url, "Pat", device=PHONE).open_event(event_id)
    phone.seat("B", 4).click()
    modal = phone.hold()
    _fill_stripe_card(phone, GOOD)
    phone.page.screenshot(path=str(screenshots / "stripe-payment-window-phone.png"))
    assert_accessible(phone.page, "the Stripe payment window on a phone")
    phone.proceed().click()
    expect(phone.page.get_by_role("heading", name="Thank you! Your seats are booked.")).to_be_visible()
    phone.assert_no_console_errors()
    del modal
