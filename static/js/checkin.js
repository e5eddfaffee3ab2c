// The door scanner: camera -> QR text -> POST /api/v1/checkins -> a big green or red
// answer with the seat and a sound. Without a network it verifies codes itself
// (signature with the public keys, the downloaded void list, its own earlier scans),
// queues the scans and uploads them when back; a ticket also let in elsewhere
// meanwhile is reported as a double entry.
import { el, formatDate, getJSON } from "app/common";
import { verifyCode } from "app/ticket-verify";

const $ = (id) => document.getElementById(id);
const answer = $("answer");
const video = $("video");
const select = $("event-select");
const gateInput = $("gate");
const QUEUE_KEY = "door:queue";
const REPEAT_MS = 3000;

let door = null;           // the last door state of the chosen event (also kept offline)
let online = navigator.onLine;
let lastCode = "";
let lastAt = 0;
let busy = false;
const seenOffline = new Set(JSON.parse(localStorage.getItem("door:seen") || "[]"));

let audio = null;
function beep(ok) {
  try {
    audio = audio || new AudioContext();
    const osc = audio.createOscillator();
    const gain = audio.createGain();
    osc.type = ok ? "sine" : "square";
    osc.frequency.value = ok ? 880 : 220;
    gain.gain.value = 0.15;
    osc.connect(gain).connect(audio.destination);
    osc.start();
    osc.stop(audio.currentTime + (ok ? 0.15 : 0.5));
  } catch (err) { /* no sound: the colour still says it */ }
}

function show(kind, title, detail) {
  answer.className = `scan-answer ${kind} mb-2`;
  answer.dataset.state = kind;
  $("answer-title").textContent = title;
  $("answer-detail").textContent = detail || "";
  if (kind !== "idle") beep(kind === "ok");
  if (navigator.vibrate && kind === "no") navigator.vibrate([80, 60, 80]);
}

function seatText(ticket) {
  return ticket ? `Section ${ticket.section} · Row ${ticket.row} · Seat ${ticket.number}` : "";
}

function setOnline(value) {
  online = value;
  const badge = $("net-state");
  badge.textContent = value ? "Online" : "Offline: checking codes here";
  badge.className = `badge ${value ? "text-bg-success" : "text-bg-warning"}`;
}

function queue() { return JSON.parse(localStorage.getItem(QUEUE_KEY) || "[]"); }
function saveQueue(items) {
  localStorage.setItem(QUEUE_KEY, JSON.stringify(items));
  $("queue-note").textContent = items.length ? `${items.length} offline scan${items.length > 1 ? "s" : ""} to upload` : "";
}

function renderCounts() {
  if (!door) return;
  const pending = queue().filter((q) => q.event_id === door.event_id).length;
  $("count-in").textContent = String(door.checked_in + pending);
  $("count-sold").textContent = String(door.sold);
}

async function post(body) {
  const response = await fetch("/api/v1/checkins", {
    method: "POST", credentials: "same-origin",
    headers: { "Content-Type": "application/json", Accept: "application/json" },
    body: JSON.stringify(body),
  });
  const data = await response.json().catch(() => ({}));
  return { status: response.status, data };
}

function explain(status, data) {
  if (status === 201) return ["ok", "Welcome in", seatText(data.ticket)];
  const error = (data && data.error) || {};
  const details = error.details || {};
  if (status === 409 && details.reason === "already_checked_in") {
    const when = formatDate(details.checked_in_at, door && door.timezone);
    return ["no", "Already checked in", `${seatText(details.ticket)} · at ${when}${details.gate ? ` · gate ${details.gate}` : ""}`];
  }
  if (status === 409 && details.reason === "void") return ["no", "Refunded ticket", `${seatText(details.ticket)} · it does not admit anyone`];
  if (status === 409 && details.reason === "wrong_event") return ["no", "Other event", error.message];
  if (status === 409) return ["no", "Not now", error.message];
  if (status === 422) return ["no", "Not a real ticket", "This code is forged or damaged."];
  if (status === 403) return ["no", "Not allowed", "You are not door staff of this event's organizer."];
  if (status === 401) return ["no", "Signed out", "Sign in again to keep scanning."];
  return ["no", "Try again", error.message || `The box office answered ${status}.`];
}

async function checkOffline(code) {
  const checked = door && await verifyCode(code, door.keys);
  if (!checked) return ["no", "Not a real ticket", "This code is forged or damaged (checked offline)."];
  if (checked.eventId !== door.event_id) return ["no", "Other event", "This ticket is for another event."];
  if (door.void_ticket_ids.includes(checked.ticketId)) return ["no", "Refunded ticket", `Ticket ${checked.ticketId} does not admit anyone.`];
  if (seenOffline.has(checked.ticketId)) return ["no", "Already checked in", `Ticket ${checked.ticketId} was let in at this scanner before (checked offline).`];
  seenOffline.add(checked.ticketId);
  localStorage.setItem("door:seen", JSON.stringify([...seenOffline]));
  const items = queue();
  items.push({ code, gate: gateInput.value || null, event_id: door.event_id, scanned_at: new Date().toISOString(), ticket_id: checked.ticketId });
  saveQueue(items);
  renderCounts();
  return ["ok", "Welcome in (offline)", `Ticket ${checked.ticketId} · uploaded when the network is back`];
}

async function handle(code) {
  code = (code || "").trim();
  const now = Date.now();
  if (!code || busy || (code === lastCode && now - lastAt < REPEAT_MS)) return;
  busy = true;
  lastCode = code;
  lastAt = now;
  try {
    let result;
    if (online) {
      try {
        const { status, data } = await post({ code, gate: gateInput.value || null, event_id: door ? door.event_id : null });
        result = explain(status, data);
        // Remembered for offline checks: a ticket let in here stays refused here.
        const inside = status === 201 ? data.ticket
          : (data.error && data.error.details && data.error.details.reason === "already_checked_in" ? data.error.details.ticket : null);
        if (inside) {
          seenOffline.add(inside.id);
          localStorage.setItem("door:seen", JSON.stringify([...seenOffline]));
        }
        if (status === 201 && door) { door.checked_in += 1; renderCounts(); }
      } catch (err) {
        setOnline(false);
      }
    }
    if (!result) result = await checkOffline(code);
    show(...result);
  } finally {
    busy = false;
  }
}

async function upload() {
  const items = queue();
  if (!items.length || !online) return;
  const left = [];
  const doubles = [];
  for (const item of items) {
    try {
      const { status, data } = await post({ code: item.code, gate: item.gate, event_id: item.event_id, scanned_at: item.scanned_at });
      const details = (data.error && data.error.details) || {};
      if (status === 409 && details.reason === "already_checked_in") {
        doubles.push(`${seatText(details.ticket) || `Ticket ${item.ticket_id}`}: let in offline at ${formatDate(item.scanned_at, door && door.timezone)}${item.gate ? ` (gate ${item.gate})` : ""}, but also at ${formatDate(details.checked_in_at, door && door.timezone)}${details.gate ? ` (gate ${details.gate})` : ""}`);
      } else if (status >= 500 || status === 429) {
        left.push(item);
      } else if (status !== 201) {
        doubles.push(`${seatText(details.ticket) || `Ticket ${item.ticket_id}`}: let in offline, but ${(data.error && data.error.message) || "refused"}`);
      }
    } catch (err) {
      left.push(item);
      setOnline(false);
    }
  }
  saveQueue(left);
  if (doubles.length) {
    const box = $("doubles");
    box.classList.remove("d-none");
    box.replaceChildren(el("strong", { text: "Double entries found on upload:" }),
      el("ul", { class: "mb-0" }, ...doubles.map((d) => el("li", { text: d }))));
  }
}

async function refresh() {
  const eventId = Number(select.value);
  if (!eventId) return;
  try {
    door = await getJSON(`/api/v1/events/${eventId}/door`);
    localStorage.setItem(`door:${eventId}`, JSON.stringify(door));
    // A refresh sent before the network went away can still succeed after the browser
    // said so: only a browser that has a network is put back online here.
    if (!online && navigator.onLine) setOnline(true);
    await upload();
  } catch (err) {
    if (!err.status) setOnline(false);
    door = door || JSON.parse(localStorage.getItem(`door:${eventId}`) || "null");
  }
  renderCounts();
}

function decodeFrame(detector, canvas) {
  if (video.readyState < 2) return Promise.resolve(null);
  if (detector) {
    return detector.detect(video).then((codes) => (codes[0] ? codes[0].rawValue : null));
  }
  if (!window.jsQR) return Promise.resolve(null);
  const w = video.videoWidth;
  const h = video.videoHeight;
  canvas.width = w;
  canvas.height = h;
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  ctx.drawImage(video, 0, 0, w, h);
  const found = window.jsQR(ctx.getImageData(0, 0, w, h).data, w, h, { inversionAttempts: "dontInvert" });
  return Promise.resolve(found ? found.data : null);
}

async function startCamera() {
  const note = $("camera-note");
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    note.textContent = "No camera here: type or scan codes into the field below.";
    return;
  }
  try {
    video.srcObject = await navigator.mediaDevices.getUserMedia({ video: { facingMode: "environment" }, audio: false });
    await video.play();
  } catch (err) {
    note.textContent = "The camera is not available: allow it, or type codes below.";
    return;
  }
  let detector = null;
  if ("BarcodeDetector" in window) {
    try {
      const formats = await window.BarcodeDetector.getSupportedFormats();
      if (formats.includes("qr_code")) detector = new window.BarcodeDetector({ formats: ["qr_code"] });
    } catch (err) { detector = null; }
  }
  note.textContent = detector ? "Scanning (built-in detector)." : "Scanning.";
  const canvas = document.createElement("canvas");
  const loop = async () => {
    try {
      const code = await decodeFrame(detector, canvas);
      if (code) await handle(code);
    } catch (err) { /* a frame that could not be read */ }
    setTimeout(loop, 150);
  };
  loop();
}

async function start() {
  gateInput.value = localStorage.getItem("door:gate") || "";
  gateInput.addEventListener("change", () => localStorage.setItem("door:gate", gateInput.value));
  let events = [];
  try {
    events = await getJSON("/api/v1/door/events");
    localStorage.setItem("door:events", JSON.stringify(events));
  } catch (err) {
    events = JSON.parse(localStorage.getItem("door:events") || "[]");
  }
  if (!events.length) {
    show("no", "No events", "You are not door staff of any organizer.");
    return;
  }
  select.replaceChildren(...events.map((e) => el("option", { value: String(e.id), text: `${e.name} · ${formatDate(e.starts_at)}` })));
  const chosen = new URLSearchParams(window.location.search).get("event") || localStorage.getItem("door:event");
  if (chosen && events.some((e) => String(e.id) === chosen)) select.value = chosen;
  select.addEventListener("change", () => { localStorage.setItem("door:event", select.value); refresh(); });
  $("manual").addEventListener("submit", (e) => {
    e.preventDefault();
    const input = $("manual-code");
    lastCode = "";
    handle(input.value);
    input.value = "";
  });
  window.addEventListener("online", () => { setOnline(true); refresh(); });
  window.addEventListener("offline", () => setOnline(false));
  setOnline(navigator.onLine);
  saveQueue(queue());
  await refresh();
  setInterval(refresh, 5000);
  startCamera();
}

start();
