// The live connection (Socket.IO over the session cookie), its visible status,
// and requests that survive reconnects.
import { io } from "socket.io-client";

const STATUS_TEXT = {
  connecting: "Connecting to live updates…",
  live: "Live: seats update as they change.",
  down: "Connection lost. Reconnecting… Seats shown may be out of date.",
  "signed-out": "Your session has ended. Log in again to see live updates.",
  // A signed-out visitor's read-only connection (it may watch, not hold).
  watching: "Live: seats update as they change.",
  // A signed-out visitor without one (too many from this address): the map as loaded.
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
// watching: a signed-out visitor's read-only socket (no credentials are sent; the
// server lets it watch seat maps). onRefused(error) hears the server's refusals
// (the contract's error object); one that means "not now" is retried here.
export function openLive({ onConnect, onDown, onRefused, watching = false } = {}) {
  const socket = io({ reconnectionDelay: 500, reconnectionDelayMax: 5000 });
  setLiveStatus("connecting");

  socket.on("connect", () => {
    setLiveStatus(watching ? "watching" : "live");
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
    // A refusal by the server carries the error object; the client does not retry
    // after one by itself. Anything else is the network: it retries on its own.
    const refusal = err && err.data && err.data.code ? err.data : null;
    if (!refusal) {
      setLiveStatus("down");
      return;
    }
    if (refusal.code === "unauthorized") setLiveStatus("signed-out");
    else if (watching && refusal.code === "limit_exceeded") setLiveStatus("anonymous");
    else setLiveStatus("down");
    if (refusal.code === "busy" || refusal.code === "rate_limited" || (watching && refusal.code === "limit_exceeded")) {
      // Not now: ask again later, at a random moment so that a crowd refused
      // together does not come back together.
      const wait = Math.max(1, (refusal.details && refusal.details.retry_after_s) || (watching ? 30 : 2));
      setTimeout(() => { if (!socket.connected) socket.connect(); }, wait * 1000 * (1 + Math.random()));
    }
    if (onRefused) onRefused(refusal);
  });
  return socket;
}

// The recovery rule (docs/API.md, "Recovery"): a request is sent again, with the
// same request_id, when it has had no result RESEND_AFTER_MS after it was last
// sent (then twice as long each time, up to RESEND_MAX_MS), at once when the
// server says `resend` (its message queue lost results), and after every
// reconnect. The server performs a request at most once and repeats the
// recorded result if it already finished, so a re-send is always safe.
export const RESEND_AFTER_MS = 5000;
export const RESEND_MAX_MS = 30000;
// Refusals that mean "not now" (nothing was done): an accepted request that
// meets one when re-sent stays pending and is sent again later.
const NOT_NOW = new Set(["busy", "rate_limited"]);

// Requests whose results come later as events.
export class Requests {
  constructor(socket) {
    this.socket = socket;
    this.pending = new Map(); // request_id -> {event, payload, onReject, accepted, wait, due}
    socket.on("resend", () => this.resend());
    setInterval(() => this._resendOverdue(), 1000);
  }

  send(event, payload, onReject) {
    this.pending.set(payload.request_id, {
      event, payload, onReject, accepted: false, wait: RESEND_AFTER_MS, due: 0,
    });
    this._emit(payload.request_id);
  }

  _emit(requestId) {
    const entry = this.pending.get(requestId);
    if (!entry || !this.socket.connected) return; // sent again on reconnect
    entry.due = Date.now() + entry.wait;
    entry.wait = Math.min(entry.wait * 2, RESEND_MAX_MS);
    this.socket.timeout(15000).emit(entry.event, entry.payload, (timedOut, ack) => {
      // No ack in time: keep it pending; it is sent again when due.
      if (timedOut || !ack || this.pending.get(requestId) !== entry) return;
      if (ack.ok) {
        entry.accepted = true;
        return;
      }
      const error = ack.error || {};
      if (entry.accepted && NOT_NOW.has(error.code)) {
        // Not now: again after the pause the server names, plus a random part of it.
        const after = Math.max(1, (error.details && error.details.retry_after_s) || 2) * 1000;
        entry.due = Date.now() + after * (0.5 + Math.random());
        return;
      }
      this.pending.delete(requestId);
      if (entry.onReject) entry.onReject(error);
    });
  }

  _resendOverdue() {
    if (!this.socket.connected) return;
    const now = Date.now();
    for (const [requestId, entry] of this.pending) {
      if (entry.due && now >= entry.due) this._emit(requestId);
    }
  }

  // True if the result is for one of this page's requests (and forgets it).
  settle(requestId) {
    return this.pending.delete(requestId);
  }

  has(requestId) {
    return this.pending.has(requestId);
  }

  // Send every request without a result again now (after a reconnect, or when told to).
  resend() {
    for (const requestId of this.pending.keys()) this._emit(requestId);
  }

  get size() {
    return this.pending.size;
  }
}

// Seat statuses keyed by id, keeping only the newest version of each seat. A held
// seat may carry when its hold runs out (expires_at): from then on it shows as
// available, as the server would grant it to the next buyer who asks.
export class SeatVersions {
  // now(): the server's clock (app/common's serverNow).
  constructor(now = () => Date.now()) {
    this.now = now;
    this.seats = new Map(); // id -> {status, version, expiresAt (ms) or undefined}
    this.expiring = new Map(); // id -> ms: held seats whose hold has not run out yet
    this.nextExpiry = Infinity;
  }

  // Applies the newer entries; returns the ids whose shown status changed.
  apply(list) {
    const changed = [];
    const now = this.now();
    for (const s of list) {
      const known = this.seats.get(s.id);
      if (known && known.version >= s.version) continue;
      const before = known ? this._reported(s.id, known, now) : undefined;
      const entry = {
        status: s.status,
        version: s.version,
        expiresAt: s.status === "held" && s.expires_at ? Date.parse(s.expires_at) : undefined,
      };
      this.seats.set(s.id, entry);
      if (entry.expiresAt !== undefined && entry.expiresAt > now) {
        this.expiring.set(s.id, entry.expiresAt);
        this.nextExpiry = Math.min(this.nextExpiry, entry.expiresAt);
      } else {
        this.expiring.delete(s.id);
      }
      if (before !== shown(entry, now)) changed.push(s.id);
    }
    return changed;
  }

  // What the caller was last told of a seat: a hold that ran out since the last
  // lapse() was still "held" to it (its page has not redrawn the seat yet).
  _reported(id, known, now) {
    return this.expiring.has(id) ? known.status : shown(known, now);
  }

  // The seats of a hold known to have run out (the buyer's own countdown ended,
  // counted from when the grant arrived): they show as available now, even when
  // this page's estimate of the server's clock lags. Only entries still carrying
  // that hold's expiry (within a second: the two are rounded apart) are touched;
  // returns the ids whose shown status changed.
  expire(ids, expiresAt) {
    const now = this.now();
    const changed = [];
    for (const id of ids) {
      const entry = this.seats.get(id);
      if (!entry || !this.expiring.has(id) || Math.abs(entry.expiresAt - expiresAt) > 1000) continue;
      this.expiring.delete(id);
      entry.expiresAt = Math.min(entry.expiresAt, now);
      changed.push(id);
    }
    return changed;
  }

  // The ids whose hold ran out since the last call: they show as available now.
  lapse() {
    const now = this.now();
    if (now < this.nextExpiry) return [];
    const ids = [];
    let next = Infinity;
    for (const [id, at] of this.expiring) {
      if (at <= now) {
        ids.push(id);
        this.expiring.delete(id);
      } else if (at < next) {
        next = at;
      }
    }
    this.nextExpiry = next;
    return ids;
  }

  status(id) {
    const known = this.seats.get(id);
    return known ? shown(known, this.now()) : undefined;
  }

  count(status) {
    const now = this.now();
    let n = 0;
    for (const s of this.seats.values()) if (shown(s, now) === status) n += 1;
    return n;
  }
}

function shown(entry, now) {
  return entry.status === "held" && entry.expiresAt !== undefined && entry.expiresAt <= now
    ? "available" : entry.status;
}
