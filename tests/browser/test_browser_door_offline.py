"""The door scanner's network badge in Chromium: an answer to a request sent before the
network went away does not put the scanner back online (seen once in the suite: the
5-second refresh was in flight when the test took the network away, its answer arrived
after the browser's offline event, and the badge went back to Online)."""
import json

from playwright.sync_api import expect

from tests.browser.support import PHONE, strict_csp
from tests.tickets_helpers import Organizer, wait_for


def test_an_answer_from_before_the_network_went_away_keeps_the_scanner_offline(
        browser, cluster, clean_db, screenshots):
    cluster.worker(concurrency=1)
    web = cluster.web()
    org = Organizer(web.url, clean_db, rows=1, per_row=4)
    staff = browser.new_context(locale="en-GB", timezone_id="Europe/London", **PHONE)
    strict_csp(staff)
    assert staff.request.post(web.url + "/api/v1/session", data={
        "email": org.staff_email, "password": "correct-horse-battery"}).status == 200
    page = staff.new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{web.url}/checkin?event={org.event_id}")
    badge = page.get_by_test_id("net-state")
    expect(badge).to_have_text("Online")
    expect(page.get_by_test_id("count-sold")).to_have_text("0")
    door = staff.request.get(f"{web.url}/api/v1/events/{org.event_id}/door").json()

    # Hold the page's next refresh (every 5 s) before it is answered.
    held = []
    page.route(f"**/api/v1/events/{org.event_id}/door", lambda route: held.append(route))
    wait_for(lambda: held or page.wait_for_timeout(100), 15)
    staff.set_offline(True)
    expect(badge).to_contain_text("Offline")
    # Its answer arrives now: the browser still has no network.
    held[0].fulfill(status=200, content_type="application/json", body=json.dumps(door))
    page.wait_for_timeout(1000)
    expect(badge).to_contain_text("Offline")
    page.screenshot(path=str(screenshots / "scanner-offline-phone.png"))
    page.set_viewport_size({"width": 1280, "height": 800})
    page.screenshot(path=str(screenshots / "scanner-offline-desktop.png"))
    page.set_viewport_size({"width": 390, "height": 844})

    staff.set_offline(False)
    page.unroute(f"**/api/v1/events/{org.event_id}/door")
    expect(badge).to_have_text("Online")
    assert errors == []
    staff.close()
