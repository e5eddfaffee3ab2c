// The payment window: the held seats, the total, a countdown to the hold's
// end, and the card form. Closing it (Cancel, the X, Escape) gives the hold back.
// With Stripe, the card is typed into Stripe's own fields (app/stripe_card) and
// only a token id is sent; a 3-D Secure challenge is shown when the bank asks.
import { errorText, money, newId, serverNow } from "app/common";
import { cardPayload, checkCard, groupNumber } from "app/card";
import { StripeCard } from "app/stripe_card";

const CARD_FIELDS = ["name", "number", "exp", "cvc"];

export class Checkout {
  constructor({ requests, describeSeat, onClosed, payment = {} }) {
    this.requests = requests;
    this.describeSeat = describeSeat;
    this.onClosed = onClosed; // (hold, reason) after the window has closed
    this.modalEl = document.getElementById("payment-modal");
    this.modal = window.bootstrap.Modal.getOrCreateInstance(this.modalEl, { backdrop: "static", keyboard: true });
    this.form = document.getElementById("card-form");
    this.payButton = document.getElementById("pay-button");
    this.cancelButton = document.getElementById("cancel-button");
    this.closeButton = this.modalEl.querySelector(".btn-close");
    this.errorBox = document.getElementById("payment-error");
    this.countdown = document.getElementById("countdown");
    this.announce = document.getElementById("countdown-announce");
    this.fields = payment.processor === "stripe" ? ["name"] : CARD_FIELDS;
    this.inputs = Object.fromEntries(this.fields.map((f) => [f, document.getElementById(`card-${f}`)]));
    this.stripeCard = payment.processor === "stripe"
      ? new StripeCard({ publishableKey: payment.publishable_key, mountOn: "#card-element" })
      : null;
    this.challenging = false; // a 3-D Secure challenge is on screen
    this.hold = null;
    this.attempt = null; // {request_id, idempotency_key} of the payment in flight
    this.closeReason = null;
    this.touched = new Set();
    this.connectionBox = document.getElementById("payment-connection");
    this.online = requests.socket.connected;
    // The page's connection banner is hidden behind this window: say it here.
    // A payment sent (or about to be) is re-sent once the connection is back
    // (app/live's Requests); the same idempotency key never charges twice.
    requests.socket.on("disconnect", () => this._setOnline(false));
    requests.socket.on("connect", () => this._setOnline(true));

    this.form.addEventListener("submit", (e) => {
      e.preventDefault();
      this._pay();
    });
    for (const [field, input] of Object.entries(this.inputs)) {
      input.addEventListener("blur", () => {
        if (input.value) this.touched.add(field);
        this._showProblems(this._problems(), [field]);
      });
      input.addEventListener("input", () => {
        if (field === "number" && input.selectionStart === input.value.length) {
          input.value = groupNumber(input.value);
        }
        // Clear an error as soon as it is fixed; do not nag while the buyer is still typing.
        if (input.classList.contains("is-invalid")) this._showProblems(this._problems(), [field]);
      });
    }
    this.modalEl.addEventListener("hide.bs.modal", (e) => {
      // A payment in flight decides the hold's fate; the window waits for it.
      if (this.attempt) {
        e.preventDefault();
        return;
      }
      if (!this.closeReason) this.closeReason = "cancelled";
    });
    this.modalEl.addEventListener("hidden.bs.modal", () => {
      const hold = this.hold;
      const reason = this.closeReason;
      this._reset();
      if (hold) this.onClosed(hold, reason);
    });
    this.modalEl.addEventListener("shown.bs.modal", () => {
      // A close asked for while the window was still opening happens now.
      if (this.closeReason) this.modal.hide();
      else this.inputs.name.focus();
    });
  }

  get isOpen() {
    return this.hold !== null;
  }

  open(hold) {
    this.hold = hold;
    this.closeReason = null;
    this.attempt = null;
    this.announced = new Set();
    const list = document.getElementById("held-seats");
    list.replaceChildren(...hold.seat_ids.map((id) => {
      const item = document.createElement("li");
      item.className = "list-group-item";
      item.textContent = this.describeSeat(id);
      return item;
    }));
    document.getElementById("hold-total").textContent = money(hold.amount_cents, hold.currency);
    this.payButton.querySelector(".label").textContent = `Proceed: pay ${money(hold.amount_cents, hold.currency)}`;
    this._setBusy(false);
    this._hideError();
    this._showConnection();
    this._tick();
    this.timer = setInterval(() => this._tick(), 250);
    this.modal.show();
  }

  // Close without releasing: the hold ended ('expired'), was closed by the server, or was paid.
  close(reason) {
    if (!this.hold) return;
    this.attempt = null;
    this.closeReason = reason;
    this.modal.hide();
  }

  remainingMs() {
    if (!this.hold) return 0;
    // The server's expiry on the server's clock, but never more than a full hold from
    // when the grant arrived: a wrong clock can only shorten the countdown.
    const byExpiry = Date.parse(this.hold.expires_at) - serverNow();
    const byTtl = this.hold.received_at + this.hold.ttl_ms - Date.now();
    return Math.max(0, Math.min(byExpiry, byTtl));
  }

  _tick() {
    const ms = this.remainingMs();
    const total = Math.ceil(ms / 1000);
    const m = Math.floor(total / 60);
    const s = String(total % 60).padStart(2, "0");
    this.countdown.textContent = `${m}:${s}`;
    this.countdown.classList.toggle("text-danger", total <= 30);
    // The timer itself is silent; a screen reader hears a few milestones instead.
    for (const mark of [60, 30, 10]) {
      if (total <= mark && total > 0 && !this.announced.has(mark) && this.hold.ttl_ms / 1000 > mark) {
        this.announced.add(mark);
        this.announce.textContent = `${mark} seconds left to pay.`;
      }
    }
    if (ms <= 0 && !this.attempt) this.close("expired");
  }

  _values() {
    return Object.fromEntries(this.fields.map((f) => [f, this.inputs[f].value]));
  }

  _problems() {
    if (this.stripeCard) {
      // Stripe's fields check the card itself; the name is ours to ask for.
      return this.inputs.name.value.trim() ? {} : { name: "Enter the name shown on the card." };
    }
    return checkCard(this._values());
  }

  _showProblems(problems, fields = this.fields) {
    for (const field of fields) {
      const input = this.inputs[field];
      const message = problems[field];
      // Only fields the buyer has finished with (or tried to submit) show errors.
      const show = message && (this.touched.has(field) || this.submitted);
      input.classList.toggle("is-invalid", Boolean(show));
      input.setAttribute("aria-invalid", show ? "true" : "false");
      document.getElementById(`card-${field}-error`).textContent = show ? message : "";
    }
  }

  _pay() {
    // One attempt at a time: a second click while one is in flight does nothing,
    // so a double click can never send two payments.
    if (this.attempt || !this.hold) return;
    this.submitted = true;
    const problems = this._problems();
    this._showProblems(problems);
    const firstBad = this.fields.find((f) => problems[f]);
    if (firstBad) {
      this.inputs[firstBad].focus();
      return;
    }
    this._hideError();
    // A new attempt gets a new idempotency key; a re-send of this attempt (after a
    // reconnect) reuses it, so the card is charged at most once per attempt.
    const attempt = { request_id: newId(), idempotency_key: newId() };
    this.attempt = attempt;
    this._setBusy(true);
    if (this.stripeCard) {
      this._payWithStripe(attempt);
      return;
    }
    this.requests.send("pay", {
      request_id: attempt.request_id,
      hold_id: this.hold.hold_id,
      idempotency_key: attempt.idempotency_key,
      card: cardPayload(this._values()),
    }, (error) => this._failed(attempt, error));
  }

  async _payWithStripe(attempt) {
    const { tokenId, message } = await this.stripeCard.token(this.inputs.name.value.trim());
    if (this.attempt !== attempt) return;
    if (!tokenId) {
      this._failed(attempt, { code: "invalid_card", message });
      return;
    }
    this.requests.send("pay", {
      request_id: attempt.request_id,
      hold_id: this.hold.hold_id,
      idempotency_key: attempt.idempotency_key,
      payment_token: tokenId,
    }, (error) => this._failed(attempt, error));
  }

  // payment_action: the bank wants the buyer to pass 3-D Secure for this attempt.
  // The hold stays the buyer's meanwhile; afterwards the server is told to read
  // the outcome from Stripe, and payment_result follows as for any payment.
  async onPaymentAction(message) {
    const attempt = this.attempt;
    if (!attempt || message.request_id !== attempt.request_id || this.challenging) return;
    this.challenging = true;
    this.payButton.querySelector(".label").textContent = "Waiting for your bank…";
    try {
      await this.stripeCard.challenge(message.client_secret);
    } finally {
      this.challenging = false;
    }
    if (this.attempt !== attempt) return;
    this.payButton.querySelector(".label").textContent = "Paying…";
    this.requests.socket.emit("confirm_payment", {
      request_id: newId(),
      hold_id: message.hold_id,
      idempotency_key: attempt.idempotency_key,
    });
  }

  // payment_result for this window's attempt.
  onPaymentResult(result) {
    if (!this.attempt || result.request_id !== this.attempt.request_id) return false;
    if (result.ok) {
      this.closeReason = "paid";
      this.payButton.querySelector(".label").textContent = "Paid. Opening your order…";
      window.location.assign(`/orders/${result.order_id}?new=1`);
      return true;
    }
    this._failed(this.attempt, result.error || {});
    return true;
  }

  _failed(attempt, error) {
    if (this.attempt !== attempt) return;
    this.attempt = null;
    this._showConnection();
    if (error.code === "hold_expired" || error.code === "not_found") {
      this.close("expired");
      return;
    }
    if (error.code === "invalid_request" && error.details && error.details.fields) {
      this._serverFieldErrors(error.details.fields);
    }
    this._showError(errorText(error));
    if (this.remainingMs() <= 0) this.close("expired");
  }

  _serverFieldErrors(fields) {
    const flat = {};
    const walk = (prefix, value) => {
      if (Array.isArray(value)) flat[prefix] = value.join(" ");
      else if (value && typeof value === "object") {
        for (const [k, v] of Object.entries(value)) walk(prefix ? `${prefix}.${k}` : k, v);
      }
    };
    walk("", fields);
    const map = { "card.number": "number", "card.exp_month": "exp", "card.exp_year": "exp", "card.cvc": "cvc", "card.name": "name" };
    if (this.stripeCard) return;
    const problems = {};
    for (const [key, message] of Object.entries(flat)) {
      const field = map[key];
      if (field) problems[field] = message;
    }
    this.fields.forEach((f) => this.touched.add(f));
    this._showProblems(problems);
  }

  _setOnline(online) {
    const wasOnline = this.online;
    this.online = online;
    this._showConnection(online && !wasOnline);
  }

  // The window's connection notice and what Pay can do meanwhile.
  _showConnection(justBack = false) {
    if (!this.hold) return;
    let text = "";
    if (!this.online) {
      text = this.attempt
        ? "Connection lost. Reconnecting… Your payment is kept and is sent again as soon as "
          + "the connection is back; your card is charged at most once."
        : "Connection lost. Reconnecting… You can pay once the connection is back; "
          + "your seats stay held until the timer runs out.";
    } else if (justBack && this.attempt) {
      text = "Connected again. Checking your payment…";
    }
    this.connectionBox.textContent = text;
    this.connectionBox.classList.toggle("d-none", !text);
    this._setBusy(Boolean(this.attempt));
  }

  _showError(text) {
    this.errorBox.textContent = text;
    this.errorBox.classList.remove("d-none");
  }

  _hideError() {
    this.errorBox.textContent = "";
    this.errorBox.classList.add("d-none");
  }

  _setBusy(busy) {
    const offline = !this.online;
    this.payButton.disabled = busy || offline;
    this.payButton.querySelector(".spinner-border").classList.toggle("d-none", !busy);
    const label = this.payButton.querySelector(".label");
    if (busy) label.textContent = offline ? "Paying… waiting for the connection" : "Paying…";
    else if (offline) label.textContent = "Waiting for the connection…";
    else if (this.hold) label.textContent = `Proceed: pay ${money(this.hold.amount_cents, this.hold.currency)}`;
    this.cancelButton.disabled = busy;
    this.closeButton.disabled = busy;
    for (const input of Object.values(this.inputs)) input.readOnly = busy;
    if (this.stripeCard && typeof this.stripeCard.card.update === "function") {
      this.stripeCard.card.update({ disabled: busy });
    }
  }

  _reset() {
    clearInterval(this.timer);
    this.hold = null;
    this.attempt = null;
    this.submitted = false;
    this.touched.clear();
    this.form.reset();
    if (this.stripeCard && typeof this.stripeCard.card.clear === "function") this.stripeCard.card.clear();
    this._showProblems({});
    this._hideError();
    this._setBusy(false);
    this.connectionBox.textContent = "";
    this.connectionBox.classList.add("d-none");
    this.announce.textContent = "";
  }
}
