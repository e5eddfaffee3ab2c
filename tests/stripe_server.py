"""localstripe, a stateful server speaking Stripe's API, as a process the tests start.

Nothing here imitates Stripe: cards are tokenized, 3-D Secure challenges are
answered and webhooks are registered over HTTP exactly as Stripe.js and the
dashboard would (localstripe's own endpoints: /v1/tokens with the publishable
key, /v1/payment_intents/<id>/_authenticate, /_config/webhooks/<id>).
"""
import hashlib
import hmac
import json
import socket
import subprocess
import sys
import threading
import time
import uuid

import requests

from tests.harness import ROOT, free_port, wait_until

SECRET_KEY = "sk_test_boxoffice"
PUBLISHABLE_KEY = "pk_test_boxoffice"
WEBHOOK_SECRET = "whsec_boxoffice_test"

# Stripe's test cards (as localstripe models them: see docs/PAYMENTS.md).
GOOD = "4242424242424242"
DECLINED = "4000000000000341"        # attaches, then every charge is declined
THREE_DS = "4000002500003155"        # needs 3-D Secure, then succeeds
THREE_DS_DECLINED = "4000008260003178"  # needs 3-D Secure, then declined


class LocalStripe:
    """One localstripe process on a free port; stop() ends it."""

    def __init__(self, log_dir):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_dir / f"localstripe-{self.port}.log"
        self._log = open(self.log_path, "w")
        # --from-scratch: never load the state another run left in /tmp.
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from localstripe.server import start; start()",
             "--port", str(self.port), "--from-scratch"],
            cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT)
        wait_until(self._up, 30, "localstripe up")

    def _up(self):
        if self.proc.poll() is not None:
            raise AssertionError("localstripe exited:\n" + self.log_path.read_text())
        try:
            return requests.get(self.url + "/v1/balance", timeout=1,
                                auth=(SECRET_KEY, "")).status_code == 200
        except requests.RequestException:
            return False

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self._log.close()

    def api(self, method, path, **kw):
        r = requests.request(method, self.url + path, auth=(SECRET_KEY, ""), timeout=10, **kw)
        r.raise_for_status()
        return r.json()

    def token(self, number):
        """What Stripe.js's createToken does: the card goes to Stripe with the publishable key."""
        r = requests.post(self.url + "/v1/tokens", timeout=10, data={
            "card[number]": number, "card[exp_month]": "12", "card[exp_year]": "2031",
            "card[cvc]": "123", "key": PUBLISHABLE_KEY})
        r.raise_for_status()
        return r.json()["id"]

    def authenticate(self, intent_id, client_secret, success=True):
        """What the 3-D Secure challenge does when the buyer passes (or fails) it."""
        r = requests.post(f"{self.url}/v1/payment_intents/{intent_id}/_authenticate",
                          params={"success": "true" if success else "false"}, timeout=10,
                          json={"key": PUBLISHABLE_KEY, "client_secret": client_secret})
        r.raise_for_status()
        return r.json()

    def send_webhooks_to(self, url):
        requests.post(f"{self.url}/_config/webhooks/boxoffice", timeout=10,
                      data={"url": url, "secret": WEBHOOK_SECRET}).raise_for_status()

    def events(self, intent_id=None, kind=None):
        """The events Stripe made (oldest first), optionally about one intent."""
        found = self.api("GET", "/v1/events", params={"limit": 1000})["data"]
        return sorted([e for e in found
                       if (intent_id is None or e["data"]["object"].get("id") == intent_id
                           or e["data"]["object"].get("payment_intent") == intent_id)
                       and (kind is None or e["type"] == kind)], key=lambda e: e["created"])


def signed(event, secret=WEBHOOK_SECRET, at=None):
    """An event's body and Stripe-Signature header, as Stripe signs a delivery."""
    body = json.dumps(event, indent=2, sort_keys=True).encode()
    at = at or int(time.time())
    mac = hmac.new(secret.encode(), b"%d.%s" % (at, body), hashlib.sha256).hexdigest()
    return body, {"Stripe-Signature": f"t={at},v1={mac}", "Content-Type": "application/json"}


def stripe_config(server, **extra):
    return {"PAYMENT_PROCESSOR": "stripe", "STRIPE_SECRET_KEY": SECRET_KEY,
            "STRIPE_PUBLISHABLE_KEY": PUBLISHABLE_KEY, "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "STRIPE_API_BASE": server.url, "STRIPE_JS_URL": server.url + "/js.stripe.com/v3/",
            **extra}


class SlowProxy:
    """A TCP proxy to a server that holds every answer back for `delay` seconds
    (while delay is set): a processor that is slow to answer, as the client sees one."""

    def __init__(self, target_port, delay=0.0):
        self.target = ("127.0.0.1", target_port)
        self.delay = delay
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target, timeout=10)
            upstream.settimeout(None)
            threading.Thread(target=self._pipe, args=(client, upstream, 0), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, 1), daemon=True).start()

    def _pipe(self, src, dst, answers):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if answers and self.delay:
                    time.sleep(self.delay)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self):
        self.listener.close()


def new_key():
    return uuid.uuid4().hex
