"""After the sale, in Chromium: a buyer pays, sees the tickets, downloads the PDF; door
staff scan its QR code with the phone camera (Chromium's fake camera fed from the PDF
page's image) and see green; the same ticket again shows red with the first scan's time.
Screenshots of the order page, the e-mail, the PDF page and the scanner."""
import re

import pypdfium2
import requests
from playwright.sync_api import expect

from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.browser.fake_camera import qr_crop, write_y4m
from tests.browser.support import APPROVED, PHONE, BuyerTab, assert_accessible, strict_csp
from tests.tickets_helpers import Organizer, SmtpServer, auth, pdf_qr_codes, wait_for


def _qr_images_loaded(page):
    return page.locator("img.ticket-qr").evaluate_all(
        "imgs => imgs.length > 0 && imgs.every(i => i.complete && i.naturalWidth > 0)")


def test_buy_download_and_scan_at_the_door(browser, cluster, clean_db, screenshots, tmp_path):
    smtp = SmtpServer().start()
    try:
        env = {"SMTP_URL": smtp.url, "PUBLIC_URL": "http://boxoffice.test"}
        cluster.worker(concurrency=1, extra_env=env)
        web = cluster.web(extra_env=env)
        org = Organizer(web.url, clean_db, rows=2, per_row=8, price=4500)

        buyer = BuyerTab(browser, web.url, "Ada").sign_up()
        strict_csp(buyer.context)
        buyer.open_event(org.event_id)
        buyer.hold(("A", 4), ("A", 5))
        buyer.fill_card(APPROVED)
        buyer.proceed().click()
        expect(buyer.page).to_have_url(re.compile(r"/orders/\d+\?new=1$"))
        order_id = int(re.search(r"/orders/(\d+)", buyer.page.url).group(1))
        tickets = buyer.page.get_by_test_id("ticket")
        expect(tickets).to_have_count(2)
        expect(tickets.first).to_contain_text("Section Main · Row A · Seat 4")
        expect(tickets.first.locator("img.ticket-qr")).to_be_visible()
        wait_for(lambda: _qr_images_loaded(buyer.page), 15)
        assert_accessible(buyer.page, "the order page with tickets")
        buyer.page.screenshot(path=str(screenshots / "order-tickets-desktop.png"), full_page=True)

        with buyer.page.expect_download() as info:
            buyer.page.get_by_test_id("download-pdf").click()
        pdf_path = tmp_path / "tickets.pdf"
        info.value.save_as(pdf_path)
        pdf = pdf_path.read_bytes()
        token = buyer.context.request.post(web.url + "/api/v1/session", data={
            "email": buyer.email, "password": "correct-horse-battery"}).json()["token"]
        api_tickets = requests.get(f"{web.url}/api/v1/orders/{order_id}", headers=auth(token),
                                   timeout=10).json()["tickets"]
        assert pdf_qr_codes(pdf) == [[t["code"]] for t in api_tickets]
        doc = pypdfium2.PdfDocument(pdf)
        page_image = doc[0].render(scale=2).to_pil()
        doc.close()
        page_image.save(screenshots / "ticket-pdf-page.png")
        camera = write_y4m(qr_crop(page_image), tmp_path / "qr.y4m")

        phone = BuyerTab(browser, web.url, "Ada-phone", device=PHONE)
        strict_csp(phone.context)
        phone.context.request.post(web.url + "/api/v1/session", data={
            "email": buyer.email, "password": "correct-horse-battery"})
        phone.page.goto(f"{web.url}/orders/{order_id}")
        expect(phone.page.get_by_test_id("ticket")).to_have_count(2)
        wait_for(lambda: _qr_images_loaded(phone.page), 15)
        phone.page.screenshot(path=str(screenshots / "order-tickets-phone.png"), full_page=True)
        phone.assert_no_console_errors()
        phone.close()
        buyer.assert_no_console_errors()

        # The confirmation e-mail, as a mail client would show its HTML.
        mails = wait_for(lambda: [m for m in smtp.inbox.received()
                                  if "Your tickets" in m["Subject"]], 30)
        html = mails[0].get_body(("html",)).get_content()
        for name, device in (("email-phone.png", PHONE), ("email-desktop.png", {})):
            ctx = browser.new_context(**device)
            view = ctx.new_page()
            view.set_content(html)
            view.screenshot(path=str(screenshots / name), full_page=True)
            ctx.close()

        # The door: staff on a phone, the camera showing the PDF's first QR code.
        if True:
            door_browser = browser.browser_type.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS + [
                "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
                f"--use-file-for-fake-video-capture={camera}"])
            try:
                staff = door_browser.new_context(locale="en-GB", timezone_id="Europe/London",
                                                 permissions=["camera"], **PHONE)
                staff.set_default_timeout(20000)
                strict_csp(staff)
                errors = []
                r = staff.request.post(web.url + "/api/v1/session", data={
                    "email": org.staff_email, "password": "correct-horse-battery"})
                assert r.status == 200
                page = staff.new_page()
                page.on("pageerror", lambda e: errors.append(str(e)))
                # Every console error counts (a CSP refusal among them), but the
                # network's own: the offline part, and the 409 of a second scan.
                page.on("console", lambda m: errors.append(m.text) if m.type == "error"
                        and "net::ERR_INTERNET_DISCONNECTED" not in m.text
                        and "status of 409" not in m.text else None)
                served = page.goto(f"{web.url}/checkin?event={org.event_id}")
                # The page runs under the strict policy (a refusal would be a console error).
                assert "style-src 'self';" in served.headers["content-security-policy"]
                answer = page.get_by_test_id("scan-answer")
                expect(answer).to_have_attribute("data-state", "ok")
                expect(answer).to_contain_text("Welcome in")
                expect(answer).to_contain_text("Section Main · Row A · Seat 4")
                expect(page.get_by_test_id("count-in")).to_have_text("1")
                expect(page.get_by_test_id("count-sold")).to_have_text("2")
                page.screenshot(path=str(screenshots / "scanner-green-phone.png"))
                # The camera keeps showing the same code: after the repeat pause it is
                # checked again, and refused with the first scan's time.
                expect(answer).to_have_attribute("data-state", "no", timeout=15000)
                expect(answer).to_contain_text("Already checked in")
                first = requests.get(f"{web.url}/api/v1/orders/{order_id}", headers=auth(token),
                                     timeout=10).json()["tickets"][0]["checked_in_at"]
                assert first
                expect(answer).to_contain_text(re.compile(r"at \d"))
                page.screenshot(path=str(screenshots / "scanner-red-phone.png"))
                page.set_viewport_size({"width": 1280, "height": 800})
                page.screenshot(path=str(screenshots / "scanner-desktop.png"))
                page.set_viewport_size({"width": 390, "height": 844})
                assert_accessible(page, "the door scanner")

                # Offline: the camera off, the network gone; codes typed in are checked
                # here, from their signature, the void list and this scanner's own scans.
                page.evaluate("""() => { const v = document.getElementById('video');
                    v.srcObject.getTracks().forEach(t => t.stop()); v.srcObject = null; }""")
                staff.set_offline(True)
                expect(page.get_by_test_id("net-state")).to_contain_text("Offline")
                second = api_tickets[1]["code"]
                for code, words in ((second, "Welcome in (offline)"),
                                    (second, "Already checked in"),
                                    (api_tickets[0]["code"], "Already checked in"),
                                    (second[:-4] + "AAAA", "Not a real ticket")):
                    page.get_by_test_id("manual-code").fill(code)
                    page.get_by_test_id("manual-code").press("Enter")
                    expect(answer).to_contain_text(words)
                expect(page.get_by_test_id("queue-note")).to_contain_text("1 offline scan")
                staff_token = requests.post(f"{web.url}/api/v1/session", json={
                    "email": org.staff_email, "password": "correct-horse-battery"},
                    timeout=10).json()["token"]
                # Meanwhile another gate, online, lets the same ticket in.
                elsewhere = requests.post(f"{web.url}/api/v1/checkins", json={
                    "code": second, "gate": "South"}, headers=auth(staff_token), timeout=10)
                assert elsewhere.status_code == 201
                staff.set_offline(False)
                doubles = page.get_by_test_id("double-entries")
                expect(doubles).to_contain_text("Double entries found on upload", timeout=20000)
                expect(doubles).to_contain_text("Seat 5")
                expect(doubles).to_contain_text("gate South")
                expect(page.get_by_test_id("queue-note")).to_have_text("")
                page.screenshot(path=str(screenshots / "scanner-double-entry-phone.png"))
                assert not errors, errors
            finally:
                door_browser.close()
        statuses = [t["status"] for t in requests.get(
            f"{web.url}/api/v1/orders/{order_id}", headers=auth(token), timeout=10).json()["tickets"]]
        assert statuses == ["checked_in", "checked_in"]
    finally:
        smtp.stop()
