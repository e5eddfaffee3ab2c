// An order in the back office: refund the whole order or the chosen seats through
// POST /api/v1/orders/<id>/refund {seat_ids?, idempotency_key}.
import { errorText, localizeDates, newId, page } from "app/common";

localizeDates();

const form = document.getElementById("refund-form");
const message = document.getElementById("refund-message");
// One key per refund the admin means: a double click or a retry refunds once.
let pendingKey = null;
let pendingScope = null;

function say(text, kind) {
  message.className = `alert alert-${kind} mt-2`;
  message.textContent = text;
}

form?.addEventListener("submit", async (e) => {
  e.preventDefault();
  const scope = e.submitter?.dataset.scope || "some";
  const seatIds = [...form.querySelectorAll("input[name=seat_ids]:checked")].map((i) => Number(i.value));
  if (scope === "some" && !seatIds.length) {
    say("Choose the seats to refund first.", "warning");
    return;
  }
  const what = scope === "all" ? "the whole order" : `${seatIds.length} seat${seatIds.length === 1 ? "" : "s"}`;
  if (!window.confirm(`Refund ${what}? The money goes back to the buyer's card and the seats go back on sale.`)) return;
  const key = JSON.stringify([scope, seatIds]);
  if (pendingScope !== key) {
    pendingScope = key;
    pendingKey = newId();
  }
  const body = { idempotency_key: pendingKey };
  if (scope === "some") body.seat_ids = seatIds;
  enableButtons(false);
  say("Refunding…", "info");
  try {
    const response = await fetch(`/api/v1/orders/${page.order_id}/refund`, {
      method: "POST", headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify(body),
    });
    const data = await response.json().catch(() => ({}));
    if (response.ok) {
      say(`Refunded. The order is now ${String(data.status || "").replace("_", " ")}.`, "success");
      setTimeout(() => window.location.reload(), 1200);
      return;
    }
    if (response.status === 404 && !(data.error && data.error.details && data.error.details.order_id)) {
      say("Refunds are not available on this box office yet.", "warning");
    } else {
      say(errorText(data.error), "danger");
    }
  } catch (err) {
    say("The box office could not be reached. Try again: the same refund is never made twice.", "danger");
  }
  enableButtons(true);
});

// The buttons come disabled: usable once this handler is in place (a refunded
// order's whole-order button stays disabled).
function enableButtons(on) {
  for (const b of form.querySelectorAll("button[data-refund]")) b.disabled = !on;
}
if (form) enableButtons(true);
