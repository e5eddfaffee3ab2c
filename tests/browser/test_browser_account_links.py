"""Forgot password in Chromium: the login page's link, the form, the e-mailed link (read
from the .eml outbox, SMTP_URL unset), a new password, and the link refused when used
again. Screenshots of the pages at phone and desktop size."""
import email
import email.policy
import re

from playwright.sync_api import expect

from tests.browser.support import DESKTOP, PHONE, BuyerTab, assert_accessible
from tests.tickets_helpers import wait_for


def _reset_link(outbox):
    def find():
        for path in sorted(outbox.glob("*.eml")):
            msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
            if "Reset" in msg["Subject"]:
                return re.search(r"(/reset-password/\S+)",
                                 msg.get_body(("plain",)).get_content()).group(1)
        return None
    return wait_for(find, 30)


def test_forgot_password_by_email_link(browser, embedded_site, screenshots, tmp_path):
    outbox = tmp_path / "outbox"
    web = embedded_site(MAIL_OUTBOX_DIR=str(outbox))
    user = BuyerTab(browser, web.url, "Grace").sign_up()
    user.context.clear_cookies()
    for name, device in (("phone", PHONE), ("desktop", DESKTOP)):
        tab = BuyerTab(browser, web.url, f"Visitor-{name}", device=device)
        tab.page.goto(web.url + "/login")
        tab.page.get_by_role("link", name="Forgot your password?").click()
        expect(tab.page.get_by_role("heading", name="Forgot your password?")).to_be_visible()
        assert_accessible(tab.page, "the forgot-password page")
        tab.page.screenshot(path=str(screenshots / f"forgot-password-{name}.png"))
        tab.close()

    page = user.page
    page.goto(web.url + "/forgot-password")
    page.get_by_label("Email").fill(user.email)
    page.get_by_role("button", name="Send the link").click()
    expect(page.get_by_role("status")).to_contain_text("a link to reset its password is on its way")
    link = _reset_link(outbox)

    phone = BuyerTab(browser, web.url, "Grace-phone", device=PHONE)
    phone.page.goto(web.url + link)
    expect(phone.page.get_by_role("heading", name="Choose a new password")).to_be_visible()
    assert_accessible(phone.page, "the reset-password page")
    phone.page.screenshot(path=str(screenshots / "reset-password-phone.png"))
    phone.page.get_by_label("New password", exact=True).fill("a-fresh-long-secret")
    phone.page.get_by_label("Repeat the new password").fill("a-fresh-long-secret")
    phone.page.get_by_role("button", name="Save the new password").click()
    expect(phone.page).to_have_url(re.compile(r"/login$"))
    expect(phone.page.get_by_role("status")).to_contain_text("Your password is changed")
    phone.page.get_by_label("Email").fill(user.email)
    phone.page.get_by_label("Password").fill("a-fresh-long-secret")
    phone.page.get_by_role("button", name="Log in").click()
    expect(phone.page.get_by_test_id("signed-in-as")).to_have_text("Grace")
    phone.page.goto(web.url + link)
    expect(phone.page.get_by_role("heading", name="This link does not work")).to_be_visible()
    phone.page.screenshot(path=str(screenshots / "reset-link-used-phone.png"))
    phone.assert_no_console_errors()
    phone.close()
    user.close()
