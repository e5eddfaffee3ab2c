// The live connection (Socket.IO over the session cookie), its visible status,
// and requests that survive reconnects.
import { io } from "socket.io-client";

const STATUS_TEXT = {
  connecting: "Connecting to live updates…",
  live: "Live: seats update as they change.",
  down: "Connection lost. Reconnecting… Seats shown may be out of date.",
  "signed-out": "Your session has ended. Log in again to see live updates.",
  anonymous: "Log in to see seats change live.",
};

export function setLiveStatus(state) {
  const box = document.getElementById("live-status");
  if (!box || box.dataset.state === state) return;
  box.dataset.state = state;
  box.querySelector(".live-text").textContent = STATUS_TEXT[state];
  // Loud only when updates stopped; "live" again is worth a quiet note.
  box.classList.toggle("alert", state === "down" || state === "signed-out");
  box.classList.toggle("alert-warning", state === "down" || state === "signed-out");
}

// Open the socket. onConnect(socket) runs on the first connect and on every
// reconnect: that is where a page re-joins its events and re-sends requests.
export function openLive({ onConnect, onDown } = {}) {
  const socket = io({ reconnectionDelay: 500, reconnectionDelayMax: 5000 });
  setLiveStatus("connecting");

  socket.on("connect", () => {
    setLiveStatus("live");
    if (onConnect) onConnect(socket);
  });
  socket.on("disconnect", (reason) => {
    setLiveStatus("down");
    if (onDown) onDown(reason);
    // A draining server hangs up on purpose and the client does not retry on its
    // own then; come back (through the load balancer) after a short random pause
    // so that a drained instance's buyers do not all arrive at once.
    if (reason === "io server disconnect") {
      setTimeout(() => socket.connect(), 250 + Math.random() * 1000);
    }
  });
  socket.on("connect_error", (err) => {
    if (err && err.data && err.data.code === "unauthorized") {
      setLiveStatus("signed-out");
    } else {
      setLiveStatus("down");
    }
  });
  return socket;
}

// Requests whose results come later as events. A request without a result is
// re-sent with the same request_id after a reconnect: the server performs it
// at most once and repeats the recorded result if it already finished.
export class Requests {
  constructor(socket) {
    this.socket = socket;
    this.pending = new Map(); // request_id -> {event, payload, onReject}
  }

  send(event, payload, onReject) {
    this.pending.set(payload.request_id, { event, payload, onReject });
    this._emit(payload.request_id);
  }

  _emit(requestId) {
    const entry = this.pending.get(requestId);
    if (!entry || !this.socket.connected) return; // sent again on reconnect
    this.socket.timeout(15000).emit(entry.event, entry.payload, (timedOut, ack) => {
      // No ack in time: keep it pending; the next reconnect sends it again.
      if (timedOut || !ack || ack.ok) return;
      if (this.pending.get(requestId) === entry) {
        this.pending.delete(requestId);
        if (entry.onReject) entry.onReject(ack.error || {});
      }
    });
  }

  // True if the result is for one of this page's requests (and forgets it).
  settle(requestId) {
    return this.pending.delete(requestId);
  }

  has(requestId) {
    return this.pending.has(requestId);
  }

  resend() {
    for (const requestId of this.pending.keys()) this._emit(requestId);
  }
}

// Seat statuses keyed by id, keeping only the newest version of each seat.
export class SeatVersions {
  constructor() {
    this.seats = new Map(); // id -> {status, version}
  }

  // Applies the newer entries; returns the ids whose status changed.
  apply(list) {
    const changed = [];
    for (const s of list) {
      const known = this.seats.get(s.id);
      if (known && known.version >= s.version) continue;
      if (!known || known.status !== s.status) changed.push(s.id);
      this.seats.set(s.id, { status: s.status, version: s.version });
    }
    return changed;
  }

  status(id) {
    const known = this.seats.get(id);
    return known ? known.status : undefined;
  }

  count(status) {
    let n = 0;
    for (const s of this.seats.values()) if (s.status === status) n += 1;
    return n;
  }
}
