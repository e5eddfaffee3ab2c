"""Signing up, logging in and out through the HTML forms; CSRF; the vendor route."""
import re
import time

from playwright.sync_api import expect

from tests.browser.support import PASSWORD, BuyerTab, assert_accessible


def test_sign_up_log_out_log_in(browser, embedded_site):
    site = embedded_site()
    tab = BuyerTab(browser, site.url, "Forms")
    page = tab.page
    try:
        page.goto(site.url + "/signup?next=/%3Fwelcome")
        assert_accessible(page, "the sign-up form")
        page.get_by_label("Name (optional)").fill("Forms")
        page.get_by_label("Email").fill(tab.email)
        page.get_by_label("Password", exact=True).fill("short")
        page.get_by_label("Repeat the password").fill("different")
        page.get_by_role("button", name="Sign up").click()
        # Every problem at once, in words, next to its field.
        expect(page.get_by_role("alert")).to_have_text("Please fix the fields marked below.")
        expect(page.locator("#password-error")).to_contain_text("at least 10 characters")
        expect(page.locator("#confirm-error")).to_have_text("The two passwords are not the same.")
        expect(page.get_by_label("Password", exact=True)).to_have_attribute("aria-invalid", "true")
        assert_accessible(page, "the sign-up form with errors")

        page.get_by_label("Password", exact=True).fill(PASSWORD)
        page.get_by_label("Repeat the password").fill(PASSWORD)
        page.get_by_role("button", name="Sign up").click()
        expect(page).to_have_url(site.url + "/?welcome")
        expect(page.get_by_test_id("signed-in-as")).to_have_text("Forms")

        cookie = next(c for c in tab.context.cookies() if c["name"] == "session")
        assert cookie["httpOnly"] is True
        assert cookie["sameSite"] == "Lax"

        # Signed in for the session's lifetime from its last use (a cookie with an expiry).
        assert 11 * 3600 < cookie["expires"] - time.time() <= 12 * 3600 + 60

        page.get_by_role("button", name="Log out").click()
        expect(page.get_by_role("link", name="Log in")).to_be_visible()
        expect(page.get_by_role("status").filter(has_text="signed out")).to_be_visible()
        # The cookie from before the Log out no longer signs anyone in.
        old = tab.context.request.get(site.url + "/api/v1/orders",
                                      headers={"Cookie": f"session={cookie['value']}"})
        assert old.status == 401, old.text()

        # The same email again is refused with a way forward.
        page.goto(site.url + "/signup")
        page.get_by_label("Email").fill(tab.email)
        page.get_by_label("Password", exact=True).fill(PASSWORD)
        page.get_by_label("Repeat the password").fill(PASSWORD)
        page.get_by_role("button", name="Sign up").click()
        expect(page.locator("#email-error")).to_contain_text("An account with that email exists.")

        page.goto(site.url + "/login?next=/%3Fback")
        page.get_by_label("Email").fill(tab.email)
        page.get_by_label("Password").fill("wrong-password-123")
        page.get_by_role("button", name="Log in").click()
        expect(page.get_by_role("alert")).to_have_text("Wrong email or password.")
        assert_accessible(page, "the login form with an error")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()
        expect(page).to_have_url(site.url + "/?back")
        tab.assert_no_console_errors()
    finally:
        tab.close()


def test_forms_refuse_posts_without_csrf_token(browser, embedded_site):
    site = embedded_site()
    tab = BuyerTab(browser, site.url, "Csrf").sign_up()
    try:
        # A forged cross-site form has no token: nothing happens but a polite retry.
        r = tab.context.request.post(site.url + "/logout", max_redirects=0)
        assert r.status == 303
        assert tab.context.request.get(site.url + "/orders", max_redirects=0).status == 200
        r = tab.context.request.post(site.url + "/login", max_redirects=0,
                                     form={"email": tab.email, "password": PASSWORD})
        assert r.status == 303 and r.headers["location"].endswith("/login")
        # The JSON API is exempt: it takes JSON bodies, which a plain form cannot send.
        r = tab.context.request.post(site.url + "/api/v1/session",
                                     data={"email": tab.email, "password": PASSWORD})
        assert r.status == 200
    finally:
        tab.close()


def test_vendor_route_serves_only_whitelisted_files(client):
    r = client.get("/vendor/bootstrap/bootstrap.min.css")
    assert r.status_code == 200 and r.mimetype == "text/css"
    r.close()
    for path in ("/vendor/axe-core/axe.min.js", "/vendor/../package.json",
                 "/vendor/bootstrap/package.json", "/vendor/socket.io-client/dist/socket.io.js",
                 "/vendor/%2e%2e/package.json"):
        assert client.get(path).status_code == 404, path
    page = client.get("/").get_data(as_text=True)
    # Every asset URL carries its content hash; a matching hash is cacheable for a year.
    css = re.search(r'href="(/vendor/bootstrap/bootstrap\.min\.css\?v=[0-9a-f]{12})"', page)
    assert css and re.search(r'/static/css/app\.css\?v=[0-9a-f]{12}"', page)
    assert re.search(r'"socket.io-client": "/vendor/socket.io-client/socket.io.esm.min.js\?v=[0-9a-f]{12}"', page)
    r = client.get(css.group(1))
    assert "max-age=31536000" in r.headers["Cache-Control"]
    r.close()
