// The event page: the live seat map, choosing seats, holding them, paying.
import {
  errorText, getJSON, localizeDates, localizePrices, money, newId, page, serverNow, showMessage,
} from "app/common";
import { openLive, Requests, SeatVersions, setLiveStatus } from "app/live";
import { SeatMap } from "app/seatmap";
import { boardSeats, SeatPlan } from "app/seatplan";
import { Checkout } from "app/checkout";

const eventId = page.event_id;
const currency = page.event.currency;
const storageKey = `boxoffice.hold.${eventId}`;

const versions = new SeatVersions(serverNow);
const selected = new Set();
const mine = new Map(); // seat id -> hold id, for holds of this buyer
// This buyer's open holds on this event, whichever tab or device asked for them:
// hold id -> {hold_id, seat_ids, status, expires_at, amount_cents, currency, learned}.
const myHolds = new Map();
let joins = 0; // join_event answers asked for so far (a hold learned since is kept)
let holdRequest = null; // {request_id, seat_ids} while a hold is asked for
let map;
let requests;
let checkout;
let socket;
let restored = false;
let admissionToken = null; // on an event with a waiting room: this buyer's pass
const waitingRoomUrl = `/events/${eventId}/waiting-room`;

const holdButton = document.getElementById("hold-button");
const clearButton = document.getElementById("clear-button");
const summary = document.getElementById("selection-summary");
const selectionBar = document.getElementById("selection-bar");
const bestButton = document.getElementById("best-button");
let plan;

localizeDates();
localizePrices();

function seatName(id) {
  return plan.name(plan.seats.get(id));
}

function stateOf(id) {
  const status = versions.status(id);
  if (status === "sold") return "sold";
  // Kept from sale by the organizer (production holds, kills): never choosable.
  if (map.seats.get(id)?.blocked && status === "available") return "blocked";
  // hold_result and seats_changed race: whichever comes first, the buyer's own
  // seats never flash "held by someone else".
  if (mine.has(id)) return "mine";
  if (status === "held") return holdRequest && holdRequest.seat_ids.includes(id) ? "selected" : "held";
  return selected.has(id) ? "selected" : "available";
}

function redraw(ids) {
  for (const id of ids) map.render(id, stateOf(id));
}

function updateSelectionBar() {
  const ids = [...selected];
  const total = ids.reduce((sum, id) => sum + map.seats.get(id).price_cents, 0);
  const pending = holdRequest !== null;
  if (!ids.length) summary.textContent = "No seats selected.";
  else {
    const names = ids.sort((a, b) => a - b).map(seatName).join("; ");
    summary.textContent = `${ids.length} ${ids.length === 1 ? "seat" : "seats"} selected (${names}): ${money(total, currency)}`;
  }
  holdButton.disabled = !ids.length || pending || !socket || !socket.connected;
  bestButton.disabled = pending || (page.signed_in && (!socket || !socket.connected));
  clearButton.disabled = !ids.length || pending;
  holdButton.querySelector(".spinner-border").classList.toggle("d-none", !pending);
  holdButton.querySelector(".label").textContent = pending ? "Holding your seats…" : "Hold seats";
}

function activate(id) {
  if (!page.signed_in) {
    showMessage("Sign in to choose seats: log in or sign up above.", "info");
    return;
  }
  if (holdRequest) {
    showMessage("One moment: we are holding the seats you chose.", "info");
    return;
  }
  const state = stateOf(id);
  if (state === "sold" || state === "blocked") {
    showMessage(`Sorry, ${seatName(id)} is ${state === "sold" ? "sold" : "not for sale"}.`, "warning");
  } else if (state === "held") {
    showMessage(`Sorry, ${seatName(id)} is taken: someone else is holding it right now. It may become free again if they do not buy it.`, "warning");
  } else if (state === "mine") {
    showMessage(`You are already holding ${seatName(id)}. Pay for it or release it below.`, "info");
  } else if (state === "selected") {
    selected.delete(id);
  } else if (selected.size >= page.max_seats) {
    showMessage(`You can choose up to ${page.max_seats} seats in one order.`, "warning");
  } else {
    selected.add(id);
  }
  redraw([id]);
  updateSelectionBar();
  // The seat just chosen stays in sight: never under the selection bar.
  map.reveal(id, { avoid: selectionBar.getBoundingClientRect() });
}

// Newer seat versions from a snapshot or a seats_changed message.
function applySeats(list, { fromSnapshot = false } = {}) {
  const changed = versions.apply(list);
  // A held seat of the buyer's without an expiry is being paid for (in another tab,
  // perhaps); with one again, the payment failed and the hold is theirs to pay.
  let moved = false;
  for (const s of list) {
    const hold = myHolds.get(mine.get(s.id));
    const seat = versions.seats.get(s.id);
    if (!hold || seat.status !== "held" || (hold.status !== "held" && hold.status !== "paying")) continue;
    const status = seat.expiresAt === undefined ? "paying" : "held";
    if (hold.status !== status) {
      hold.status = status;
      moved = true;
    }
  }
  if (moved) renderHolds();
  seatsChanged(changed, { fromSnapshot });
}

function seatsChanged(changed, { fromSnapshot = false } = {}) {
  const lost = [];
  const ended = new Set();
  const sold = new Set();
  for (const id of changed) {
    const status = versions.status(id);
    if (status !== "held" && mine.has(id)) ended.add(mine.get(id));
    if (status === "sold" && mine.has(id)) sold.add(mine.get(id));
    // A seat the buyer chose was taken by someone else; a seat being held for
    // this buyer right now is not "taken" (its hold_result may come after this).
    if (selected.has(id) && status !== "available" && !(holdRequest && holdRequest.seat_ids.includes(id))) {
      selected.delete(id);
      lost.push(id);
    }
  }
  // Sold: paid for, here or in another tab (a window still open on it closes).
  // Otherwise released or run out: the result or the window's countdown says so.
  for (const holdId of ended) {
    if (sold.has(holdId)) endedElsewhere(holdId);
    else dropHold(holdId);
  }
  redraw(changed);
  if (lost.length) {
    const names = lost.map(seatName).join("; ");
    showMessage(`Sorry, ${names} ${lost.length === 1 ? "was" : "were"} just taken by someone else and removed from your choice.`, "warning");
  }
  if (changed.length || fromSnapshot) updateSelectionBar();
}

// "N best seats": the worker chooses them (together, nearest the stage) and holds them.
function requestBest(event) {
  event.preventDefault();
  if (!page.signed_in) {
    showMessage("Sign in to choose seats: log in or sign up above.", "info");
    return;
  }
  if (holdRequest) {
    showMessage("One moment: we are holding the seats you chose.", "info");
    return;
  }
  const best = { count: Number(document.getElementById("best-count").value) };
  const section = document.getElementById("best-section").value;
  if (section) best.section = section;
  const maxPrice = document.getElementById("price-filter").value;
  if (maxPrice) best.max_price_cents = Number(maxPrice);
  holdRequest = { request_id: newId(), seat_ids: [], best, attempt: 0 };
  updateSelectionBar();
  sendHold(holdRequest);
}

function requestHold() {
  if (holdRequest || !selected.size) return;
  const seatIds = [...selected].sort((a, b) => a - b);
  holdRequest = { request_id: newId(), seat_ids: seatIds, attempt: 0 };
  updateSelectionBar();
  sendHold(holdRequest);
}

// Busy (the box office sheds load) or too fast: try again by itself, waiting
// longer each time and a random part of it, so that a crowd refused together
// does not come back together.
const RETRIES = 4;
function sendHold(request) {
  const payload = { request_id: request.request_id, event_id: eventId };
  if (request.best) payload.best = request.best;
  else payload.seat_ids = request.seat_ids;
  if (admissionToken) payload.admission_token = admissionToken;
  requests.send("hold", payload, (error) => {
    if (holdRequest !== request) return;
    if ((error.code === "busy" || error.code === "rate_limited") && request.attempt < RETRIES) {
      const base = Math.max(1, (error.details && error.details.retry_after_s) || 2) * 1000;
      const delay = Math.min(60000, base * 2 ** request.attempt) * (0.5 + Math.random());
      request.attempt += 1;
      showMessage(`${errorText(error)} We will try again for you in ${Math.ceil(delay / 1000)} seconds.`, "info");
      setTimeout(() => { if (holdRequest === request) sendHold(request); }, delay);
      return;
    }
    if (error.code === "forbidden" && error.details && error.details.reason === "not_admitted") {
      // The pass ran out (or never came): back to the queue.
      window.location.replace(waitingRoomUrl);
      return;
    }
    holdFailed(error);
  });
}

// A release refused for now is sent again (same request_id, so it is done once):
// left to the hold's expiry, the seats would stay held and count against the
// buyer's open holds for minutes.
function sendRelease(holdId, requestId, attempt) {
  requests.send("release", { request_id: requestId, hold_id: holdId }, (error) => {
    if ((error.code === "busy" || error.code === "rate_limited") && attempt < RETRIES) {
      const base = Math.max(1, (error.details && error.details.retry_after_s) || 2) * 1000;
      const delay = Math.min(60000, base * 2 ** attempt) * (0.5 + Math.random());
      setTimeout(() => sendRelease(holdId, requestId, attempt + 1), delay);
      return;
    }
    stillHeld(holdId);
    showMessage(`We could not give your seats back just now (${errorText(error)}) They will be released automatically when the hold ends.`, "warning");
  });
}

// A release that was refused: the hold is offered again (if it is still open).
function stillHeld(holdId) {
  const hold = myHolds.get(holdId);
  if (hold && hold.status === "releasing") {
    hold.status = "held";
    renderHolds();
  }
}

function holdFailed(error) {
  const taken = (error.details && error.details.seat_ids) || [];
  const asked = holdRequest ? holdRequest.seat_ids : [];
  holdRequest = null;
  if (error.code === "seat_unavailable") {
    for (const id of taken) selected.delete(id);
  }
  redraw(asked);
  showMessage(errorText(error), "danger");
  updateSelectionBar();
}

function onHoldResult(result) {
  const ours = requests.settle(result.request_id);
  if (result.ok && result.event_id === eventId) {
    // Every tab of this buyer learns which seats are theirs; the asking tab opens
    // the payment window, the others offer the hold in the bar.
    addHold({ ...result, status: "held" });
  }
  if (!ours || !holdRequest || holdRequest.request_id !== result.request_id) {
    if (result.ok && result.event_id === eventId) redraw(result.seat_ids);
    return;
  }
  holdRequest = null;
  if (!result.ok) {
    holdFailed(result.error || {});
    return;
  }
  for (const id of result.seat_ids) selected.delete(id);
  redraw(result.seat_ids);
  updateSelectionBar();
  // Show where the seats are (best available chose them for the buyer).
  map.open(plan.sections[plan.seats.get(result.seat_ids[0]).sectionIndex], result.seat_ids[0]);
  map.reveal(result.seat_ids[0], { minPitch: 16 });
  document.getElementById("messages").replaceChildren();
  const hold = {
    hold_id: result.hold_id, seat_ids: result.seat_ids, expires_at: result.expires_at,
    amount_cents: result.amount_cents, currency: result.currency,
    received_at: Date.now(), ttl_ms: page.hold_ttl_seconds * 1000,
  };
  remember(hold);
  checkout.open(hold);
  renderHolds();
}

function remember(hold) {
  try {
    sessionStorage.setItem(storageKey, JSON.stringify({ ...hold, received_at_server: serverNow() }));
  } catch (err) { /* private mode: the window just will not come back after a reload */ }
}

function forget() {
  try {
    sessionStorage.removeItem(storageKey);
  } catch (err) { /* nothing stored */ }
}

// After a reload: bring the payment window back for a hold that is still running.
function restoreHold() {
  if (restored) return;
  restored = true;
  let hold;
  try {
    hold = JSON.parse(sessionStorage.getItem(storageKey) || "null");
  } catch (err) {
    hold = null;
  }
  if (!hold) return;
  // The join answer's holds say whether it is still this buyer's (and not being paid).
  const known = myHolds.get(hold.hold_id);
  const stillHeld = known ? known.status === "held"
    : hold.seat_ids.every((id) => versions.status(id) === "held");
  if (!stillHeld || Date.parse(hold.expires_at) <= serverNow()) {
    forget();
    return;
  }
  const elapsed = Math.max(0, serverNow() - hold.received_at_server);
  hold.received_at = Date.now() - elapsed;
  if (!known) addHold({ ...hold, status: "held" });
  checkout.open(hold);
  renderHolds();
}

function onCheckoutClosed(hold, reason) {
  forget();
  if (reason === "cancelled") {
    releaseHold(hold.hold_id);
    showMessage("Your seats are being released.", "info");
  } else if (reason === "expired") {
    // The countdown ran out on this page's own clock: the hold is over, so its
    // seats show as free now (not when the estimate of the server's clock says so).
    const lapsed = versions.expire(hold.seat_ids, Date.parse(hold.expires_at));
    dropHold(hold.hold_id);
    if (lapsed.length) seatsChanged(lapsed);
    showMessage("Your hold ran out, so the seats were released. Choose seats again to continue.", "warning");
  } else if (reason === "away") {
    dropHold(hold.hold_id);
    showMessage("Your seats were released because the connection was gone for too long. Choose seats again to continue.", "warning");
  } else if (reason === "elsewhere") {
    showMessage("That hold was paid for or released in another tab or on another device.", "info");
  }
  renderHolds();
  document.getElementById("seatmap").querySelector(".seat[tabindex='0']")?.focus();
}

function onReleaseResult(result) {
  const ours = requests.settle(result.request_id);
  // Every tab of the buyer hears it: the hold is gone wherever it was released.
  if (result.ok) endedElsewhere(result.hold_id);
  if (!ours) return;
  if (result.ok) showMessage("Your seats were released.", "info");
  else {
    const details = (result.error && result.error.details) || {};
    if (details.hold_id) stillHeld(details.hold_id);
    showMessage(errorText(result.error), "warning");
  }
}

function onHoldClosed(message) {
  if (message.event_id !== eventId) return;
  dropHold(message.hold_id);
  if (checkout.hold && checkout.hold.hold_id === message.hold_id) {
    checkout.close(message.reason === "expired" ? "expired" : "away");
  }
}

function onPaymentResult(result) {
  if (requests.settle(result.request_id)) {
    checkout.onPaymentResult(result);
    return;
  }
  // Another tab's payment: a paid hold is gone from here; a failed one is the
  // buyer's again until it runs out.
  if (result.ok && result.hold_id) {
    endedElsewhere(result.hold_id);
    return;
  }
  const hold = myHolds.get(result.hold_id);
  if (hold && hold.status === "paying") {
    hold.status = "held";
    renderHolds();
  }
}

// ---- the buyer's holds, learned from any tab ----

function addHold(hold, learned = joins) {
  const known = myHolds.get(hold.hold_id);
  myHolds.set(hold.hold_id, {
    hold_id: hold.hold_id, seat_ids: hold.seat_ids, status: hold.status || "held",
    expires_at: hold.expires_at, amount_cents: hold.amount_cents, currency: hold.currency,
    learned: known ? Math.max(known.learned, learned) : learned,
  });
  for (const id of hold.seat_ids) mine.set(id, hold.hold_id);
  redraw(hold.seat_ids);
  renderHolds();
}

function dropHold(holdId) {
  const hold = myHolds.get(holdId);
  myHolds.delete(holdId);
  const ids = [...mine].filter(([, h]) => h === holdId).map(([id]) => id);
  for (const id of ids) mine.delete(id);
  redraw(ids);
  if (hold) renderHolds();
}

// The hold ended in another tab (paid or released there): close its window here.
function endedElsewhere(holdId) {
  dropHold(holdId);
  if (checkout.hold && checkout.hold.hold_id === holdId && !checkout.attempt) {
    checkout.close("elsewhere");
  }
}

function releaseHold(holdId) {
  const hold = myHolds.get(holdId);
  if (hold) hold.status = "releasing";
  renderHolds();
  sendRelease(holdId, newId(), 0);
}

function payHold(holdId) {
  const hold = myHolds.get(holdId);
  if (!hold || hold.status !== "held" || checkout.isOpen) return;
  const remaining = Date.parse(hold.expires_at) - serverNow();
  if (remaining <= 0) return;
  const opened = {
    hold_id: hold.hold_id, seat_ids: hold.seat_ids, expires_at: hold.expires_at,
    amount_cents: hold.amount_cents, currency: hold.currency,
    received_at: Date.now(), ttl_ms: remaining,
  };
  remember(opened);
  renderHolds();
  checkout.open(opened);
}

function left(ms) {
  const total = Math.max(0, Math.ceil(ms / 1000));
  return `${Math.floor(total / 60)}:${String(total % 60).padStart(2, "0")}`;
}

// The holds this tab is not paying for right now, each with Pay and Release.
function renderHolds() {
  const box = document.getElementById("my-holds");
  if (!box || !plan) return;
  const rows = [];
  for (const hold of myHolds.values()) {
    if (checkout && checkout.hold && checkout.hold.hold_id === hold.hold_id) continue;
    const names = hold.seat_ids.map(seatName).join("; ");
    const row = document.createElement("div");
    row.className = "my-hold d-flex flex-wrap align-items-center gap-2";
    row.dataset.holdId = hold.hold_id;
    const text = document.createElement("span");
    text.className = "flex-grow-1";
    const what = `Held for you: ${names} · ${money(hold.amount_cents, hold.currency)}`;
    if (hold.status === "paying") {
      text.textContent = `${what} · payment in progress…`;
      row.append(text);
    } else if (hold.status === "releasing") {
      text.textContent = `${what} · releasing…`;
      row.append(text);
    } else {
      const time = document.createElement("span");
      time.className = "my-hold-left";
      time.textContent = left(Date.parse(hold.expires_at) - serverNow());
      text.append(`${what} · `, time, " left");
      const pay = document.createElement("button");
      pay.type = "button";
      pay.className = "btn btn-sm btn-primary";
      pay.textContent = "Pay";
      pay.setAttribute("aria-label", `Pay for ${names}`);
      pay.addEventListener("click", () => payHold(hold.hold_id));
      const release = document.createElement("button");
      release.type = "button";
      release.className = "btn btn-sm btn-outline-secondary";
      release.textContent = "Release";
      release.setAttribute("aria-label", `Release ${names}`);
      release.addEventListener("click", () => {
        releaseHold(hold.hold_id);
        showMessage("Your seats are being released.", "info");
      });
      row.append(text, pay, release);
    }
    rows.push(row);
  }
  box.replaceChildren(...rows);
  box.hidden = rows.length === 0;
}

// Every second: the countdowns of the offered holds, and seats whose hold ran out.
function tick() {
  const lapsed = versions.lapse();
  if (lapsed.length) seatsChanged(lapsed);
  for (const hold of [...myHolds.values()]) {
    const ms = Date.parse(hold.expires_at) - serverNow();
    if (hold.status === "held" && ms <= 0 && !(checkout.hold && checkout.hold.hold_id === hold.hold_id)) {
      dropHold(hold.hold_id);
      continue;
    }
    const time = document.querySelector(`#my-holds [data-hold-id="${hold.hold_id}"] .my-hold-left`);
    if (time) time.textContent = left(ms);
  }
}

// The join answer's holds are the buyer's open holds on this event: holds this page
// knew of before asking that are not among them have ended (paid, released or run
// out while this page was not listening).
function learnHolds(list, asked) {
  const open = new Set(list.map((h) => h.hold_id));
  for (const [holdId, hold] of [...myHolds]) {
    if (!open.has(holdId) && hold.learned < asked) {
      dropHold(holdId);
      if (checkout.hold && checkout.hold.hold_id === holdId && !checkout.attempt) checkout.close("elsewhere");
    }
  }
  const fresh = list.filter((h) => !myHolds.has(h.hold_id));
  for (const hold of list) addHold(hold, asked);
  return fresh;
}

function join() {
  joins += 1;
  const asked = joins;
  socket.timeout(15000).emit("join_event", { event_id: eventId, compact: true }, (timedOut, ack) => {
    if (timedOut) {
      // The connection is probably gone; the next connect joins again.
      return;
    }
    if (!ack.ok) {
      const error = ack.error || {};
      if (error.code === "unauthorized" && error.details && error.details.reason === "waiting_room") {
        // A waiting room needs an account: its page says how to take a place.
        window.location.replace(waitingRoomUrl);
        return;
      }
      if (error.code === "busy" || error.code === "rate_limited") {
        const wait = Math.max(1, (error.details && error.details.retry_after_s) || 2);
        setTimeout(() => { if (socket.connected) join(); }, wait * 1000 * (1 + Math.random()));
      }
      showMessage(errorText(error), "danger");
      return;
    }
    if (ack.waiting_room && ack.waiting_room.state !== "admitted") {
      // Not this buyer's turn yet: the waiting room brings them back here.
      window.location.replace(waitingRoomUrl);
      return;
    }
    admissionToken = ack.waiting_room ? ack.waiting_room.admission_token : null;
    applySeats(ack.board ? boardSeats(ack.board) : ack.seats, { fromSnapshot: true });
    if (ack.holds) {
      const fresh = learnHolds(ack.holds, asked);
      restoreHold();
      const offered = fresh.filter((h) => !(checkout.hold && checkout.hold.hold_id === h.hold_id));
      if (offered.length && asked === 1) {
        showMessage(`You are holding ${offered.length === 1 ? "seats" : `${offered.length} sets of seats`} for this event: pay or release them in the bar below.`, "info");
      }
    } else {
      restoreHold();
      // Signed in, but the server could not read the holds just now: ask again soon.
      if (page.signed_in) setTimeout(() => { if (socket.connected) join(); }, 3000 + Math.random() * 3000);
    }
    // Requests that had no result before the connection dropped: the server
    // answers each once, from its record if it already finished.
    requests.resend();
  });
}

function setUpFilters() {
  const sectionSelect = document.getElementById("section-select");
  sectionSelect.replaceChildren(...plan.sections.map((section) => {
    const prices = section.prices.map((c) => money(c, currency));
    return new Option(`${section.name} · ${prices.length > 1 ? `${prices[0]}–${prices[prices.length - 1]}` : prices[0]}`, String(section.index));
  }));
  sectionSelect.addEventListener("change", () => {
    const section = plan.sections[Number(sectionSelect.value)];
    map.open(section);
    map.zoomToSection(section);
  });
  const bestSection = document.getElementById("best-section");
  for (const section of plan.sections) bestSection.append(new Option(section.name, section.name));
  document.getElementById("best-form").addEventListener("submit", requestBest);
  const priceFilter = document.getElementById("price-filter");
  for (const cents of plan.prices.slice(0, -1)) priceFilter.append(new Option(`Up to ${money(cents, currency)}`, String(cents)));
  priceFilter.disabled = plan.prices.length < 2;
  const accessFilter = document.getElementById("access-filter");
  const note = document.getElementById("filter-note");
  // How many seats for sale the filters leave: an all-grey map says why.
  const filtered = (change) => {
    map.setFilter(change);
    if (!note) return;
    const filtering = priceFilter.value || accessFilter.value;
    const count = filtering ? plan.list.filter((s) => stateOf(s.id) === "available" && map.matches(s)).length : 0;
    note.textContent = !filtering ? "" : count
      ? `${count.toLocaleString()} ${count === 1 ? "seat" : "seats"} for sale match the filters.`
      : "No seat for sale matches the filters.";
  };
  priceFilter.addEventListener("change", () => filtered({ maxPrice: priceFilter.value ? Number(priceFilter.value) : Infinity }));
  accessFilter.addEventListener("change", () => filtered({ access: accessFilter.value }));
  const legend = document.getElementById("tier-legend");
  const entries = plan.tiers.length
    ? plan.tiers.filter((t) => plan.list.some((s) => s.tier === t.name)).map((t) => [t.name, t.name, t.price_cents])
    : plan.prices.map((c) => [String(c), null, c]);
  legend.replaceChildren(...entries.map(([key, name, cents]) => {
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.setAttribute("aria-hidden", "true");
    swatch.style.background = plan.colourOf.get(key);
    const item = document.createElement("li");
    item.append(swatch, ` ${name ? `${name} ` : ""}${money(cents, currency)}`);
    return item;
  }));
  document.getElementById("zoom-in").addEventListener("click", () => map.zoom(1.6));
  document.getElementById("zoom-out").addEventListener("click", () => map.zoom(1 / 1.6));
  document.getElementById("zoom-fit").addEventListener("click", () => map.fit());
  return sectionSelect;
}

// The map fills the screen between its top and the selection bar: the whole
// venue is in sight on open, and the bar never hides part of it.
function sizeMap() {
  const view = document.getElementById("seatmap-view");
  const top = view.getBoundingClientRect().top + window.scrollY;
  const room = window.innerHeight - top - selectionBar.offsetHeight - 12;
  view.style.height = `${Math.max(280, Math.min(900, room))}px`;
}

async function loadBoard() {
  try {
    applySeats(boardSeats((await getJSON(`/api/v1/events/${eventId}/board`)).board), { fromSnapshot: true });
  } catch (err) {
    showMessage("We could not load which seats are free. Reload the page to try again.", "danger");
  }
}

async function start() {
  sizeMap();
  window.addEventListener("resize", sizeMap);
  // The bar grows with the names of the chosen seats: the map shrinks to stay above it.
  new ResizeObserver(() => sizeMap()).observe(selectionBar);
  const container = document.getElementById("seatmap");
  let data;
  try {
    data = await getJSON(`/api/v1/events/${eventId}/seatmap`);
  } catch (err) {
    container.removeAttribute("aria-busy");
    container.replaceChildren();
    showMessage("We could not load the seat map. Check your connection and reload the page.", "danger");
    return;
  }
  plan = new SeatPlan(data);
  const sectionSelect = document.getElementById("section-select");
  map = new SeatMap(document.getElementById("seatmap-view"), {
    plan, onActivate: activate, onSection: (section) => { sectionSelect.value = String(section.index); },
  });
  setUpFilters();
  sectionSelect.value = String(map.section.index);
  // The filters' options change what wraps above the map: size it again.
  sizeMap();
  holdButton.addEventListener("click", requestHold);
  clearButton.addEventListener("click", () => {
    const ids = [...selected];
    selected.clear();
    redraw(ids);
    updateSelectionBar();
  });
  // Signed out: a read-only socket (it may watch the map, never hold); if the
  // server has no room for one, the map as it is now, from the REST board.
  socket = openLive({
    onConnect: join,
    onDown: () => updateSelectionBar(),
    onRefused: (error) => { if (!page.signed_in && error.code === "limit_exceeded") loadBoard(); },
    watching: !page.signed_in,
  });
  requests = new Requests(socket);
  checkout = new Checkout({
    requests,
    describeSeat: (id) => `${map.describe(id, "mine").replace(/, held by you$/, "")}`,
    onClosed: onCheckoutClosed,
    payment: page.payment,
  });
  socket.on("seats_changed", (msg) => {
    if (msg.event_id === eventId) applySeats(msg.seats);
  });
  socket.on("admitted", (message) => {
    if (message.event_id === eventId) admissionToken = message.admission_token;
  });
  socket.on("hold_result", onHoldResult);
  socket.on("release_result", onReleaseResult);
  socket.on("hold_closed", onHoldClosed);
  socket.on("payment_action", (message) => checkout.onPaymentAction(message));
  socket.on("payment_result", onPaymentResult);
  setInterval(tick, 250);
  // For tests and for debugging from the console; nothing here is secret.
  window.boxoffice = { socket, versions, selected, mine, myHolds, checkout, map };
}

start();
