// The on-sale page: the queue's figures, read again every 2 seconds.
import { localizeDates } from "app/common";

localizeDates();
const box = document.getElementById("queue");

function put(field, value) {
  const target = box.querySelector(`[data-field="${field}"]`);
  if (target) target.textContent = value;
}

async function refresh() {
  try {
    const response = await fetch(box.dataset.url, { headers: { Accept: "application/json" } });
    if (!response.ok) return;
    const s = await response.json();
    for (const field of ["pre_queue", "queued", "admitted_active", "admitted_total"]) put(field, s[field]);
    put("rate", Math.round(s.admission_rate_per_min || s.current_rate_per_min || 0));
    put("rate_mode", `(${s.rate_mode})`);
    put("expected_wait", s.expected_wait_s == null ? "— s" : `${s.expected_wait_s} s`);
    const state = document.getElementById("room-state");
    if (state) state.textContent = s.waiting_room || "none";
  } catch (err) {
    // A missed refresh is retried two seconds later.
  }
}

setInterval(refresh, 2000);
