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

const versions = new SeatVersions();
const selected = new Set();
const mine = new Map(); // seat id -> hold id, for holds of this buyer
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
    showMessage("Log in or sign up to choose seats.", "info");
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
    showMessage(`You are already holding ${seatName(id)}.`, "info");
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
  const lost = [];
  for (const id of changed) {
    const status = versions.status(id);
    if (status !== "held") mine.delete(id);
    // A seat the buyer chose was taken by someone else; a seat being held for
    // this buyer right now is not "taken" (its hold_result may come after this).
    if (selected.has(id) && status !== "available" && !(holdRequest && holdRequest.seat_ids.includes(id))) {
      selected.delete(id);
      lost.push(id);
    }
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
    showMessage("Log in or sign up to choose seats.", "info");
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
    showMessage(`We could not give your seats back just now (${errorText(error)}) They will be released automatically when the hold ends.`, "warning");
  });
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
    // Every tab of this buyer learns which seats are theirs; only the asking tab pays.
    for (const id of result.seat_ids) mine.set(id, result.hold_id);
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
  const stillHeld = hold.seat_ids.every((id) => versions.status(id) === "held");
  if (!stillHeld || Date.parse(hold.expires_at) <= serverNow()) {
    forget();
    return;
  }
  const elapsed = Math.max(0, serverNow() - hold.received_at_server);
  hold.received_at = Date.now() - elapsed;
  for (const id of hold.seat_ids) mine.set(id, hold.hold_id);
  redraw(hold.seat_ids);
  checkout.open(hold);
}

function onCheckoutClosed(hold, reason) {
  forget();
  if (reason === "cancelled") {
    sendRelease(hold.hold_id, newId(), 0);
    showMessage("Your seats are being released.", "info");
  } else if (reason === "expired") {
    for (const id of hold.seat_ids) mine.delete(id);
    redraw(hold.seat_ids);
    showMessage("Your hold ran out, so the seats were released. Choose seats again to continue.", "warning");
  } else if (reason === "away") {
    for (const id of hold.seat_ids) mine.delete(id);
    redraw(hold.seat_ids);
    showMessage("Your seats were released because the connection was gone for too long. Choose seats again to continue.", "warning");
  }
  document.getElementById("seatmap").querySelector(".seat[tabindex='0']")?.focus();
}

function onReleaseResult(result) {
  if (!requests.settle(result.request_id)) return;
  if (result.ok) {
    const ids = [...mine].filter(([, holdId]) => holdId === result.hold_id).map(([id]) => id);
    for (const id of ids) mine.delete(id);
    redraw(ids);
    showMessage("Your seats were released.", "info");
  } else {
    showMessage(errorText(result.error), "warning");
  }
}

function onHoldClosed(message) {
  if (message.event_id !== eventId) return;
  const ids = [...mine].filter(([, holdId]) => holdId === message.hold_id).map(([id]) => id);
  for (const id of ids) mine.delete(id);
  redraw(ids);
  if (checkout.hold && checkout.hold.hold_id === message.hold_id) {
    checkout.close(message.reason === "expired" ? "expired" : "away");
  }
}

function join() {
  socket.timeout(15000).emit("join_event", { event_id: eventId, compact: true }, (timedOut, ack) => {
    if (timedOut) {
      // The connection is probably gone; the next connect joins again.
      return;
    }
    if (!ack.ok) {
      showMessage(errorText(ack.error), "danger");
      return;
    }
    if (ack.waiting_room && ack.waiting_room.state !== "admitted") {
      // Not this buyer's turn yet: the waiting room brings them back here.
      window.location.replace(waitingRoomUrl);
      return;
    }
    admissionToken = ack.waiting_room ? ack.waiting_room.admission_token : null;
    applySeats(ack.board ? boardSeats(ack.board) : ack.seats, { fromSnapshot: true });
    restoreHold();
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
  if (!page.signed_in) {
    try {
      applySeats(boardSeats((await getJSON(`/api/v1/events/${eventId}/board`)).board), { fromSnapshot: true });
    } catch (err) {
      showMessage("We could not load which seats are free. Reload the page to try again.", "danger");
    }
  }
  holdButton.addEventListener("click", requestHold);
  clearButton.addEventListener("click", () => {
    const ids = [...selected];
    selected.clear();
    redraw(ids);
    updateSelectionBar();
  });
  if (!page.signed_in) {
    setLiveStatus("anonymous");
    return;
  }
  socket = openLive({ onConnect: join, onDown: () => updateSelectionBar() });
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
  socket.on("payment_result", (result) => {
    if (requests.settle(result.request_id)) checkout.onPaymentResult(result);
  });
  // For tests and for debugging from the console; nothing here is secret.
  window.boxoffice = { socket, versions, selected, mine, checkout, map };
}

start();
