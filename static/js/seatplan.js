// The seat plan of an event as the map uses it: decoded from the compact REST
// answer (parallel arrays), with each section's outline and names a person reads.
import { money } from "app/common";

export const WHEELCHAIR = 1;
export const COMPANION = 2;
export const RESTRICTED_VIEW = 4;
export const BLOCKED = 8;

// Tier colours: distinct for most colour-blind buyers, and at least 3:1 against
// the white map (WCAG's contrast for shapes).
export const TIER_COLOURS = ["#1a7f37", "#0b5cad", "#b35900", "#7b3fa0", "#b8246e", "#00707a",
  "#7a5a00", "#444f9c"];

const STATUS_NAMES = { a: "available", h: "held", s: "sold" };

// [[first, count], ...] runs of ids, as a flat list.
export function unrun(runs) {
  const ids = [];
  for (const [first, count] of runs) for (let k = 0; k < count; k += 1) ids.push(first + k);
  return ids;
}

// The compact board (join_event {compact: true} or GET .../board) as
// [{id, status, version, expires_at?}] (expiring: when held seats' holds run out).
export function boardSeats(board) {
  const ids = unrun(board.ids);
  const expiry = new Map();
  for (const group of board.expiring || []) {
    for (const id of unrun(group.ids)) expiry.set(id, group.expires_at);
  }
  return ids.map((id, i) => {
    const seat = { id, status: STATUS_NAMES[board.status[i]], version: board.versions[i] };
    if (expiry.has(id)) seat.expires_at = expiry.get(id);
    return seat;
  });
}

// Andrew's monotone chain: the convex outline of a section's seats.
function hull(points) {
  const p = [...points].sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  if (p.length < 3) return p;
  const cross = (o, a, b) => (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0]);
  const lower = [];
  for (const q of p) {
    while (lower.length >= 2 && cross(lower[lower.length - 2], lower[lower.length - 1], q) <= 0) lower.pop();
    lower.push(q);
  }
  const upper = [];
  for (let i = p.length - 1; i >= 0; i -= 1) {
    const q = p[i];
    while (upper.length >= 2 && cross(upper[upper.length - 2], upper[upper.length - 1], q) <= 0) upper.pop();
    upper.push(q);
  }
  return lower.slice(0, -1).concat(upper.slice(0, -1));
}

export class SeatPlan {
  constructor(data) {
    this.currency = data.currency;
    this.plan = data.plan;
    this.stage = data.stage;
    this.focal = data.focal_point;
    this.tiers = data.tiers;
    const a = data.seats;
    const ids = unrun(a.ids);
    this.seats = new Map();
    this.list = [];
    this.sections = data.sections.map((s, index) => ({
      index, name: s.name, rows: s.rows, seats: [], rowSeats: s.rows.map(() => []),
    }));
    ids.forEach((id, i) => {
      const section = this.sections[a.section[i]];
      const flags = a.flags[i];
      const tier = a.tier[i] >= 0 ? this.tiers[a.tier[i]].name : null;
      const seat = {
        id, index: i, section: section.name, sectionIndex: section.index,
        row: section.rows[a.row[i]], rowIndex: a.row[i], number: a.number[i],
        x: a.x[i], y: a.y[i], price_cents: data.prices[a.price[i]], tier,
        wheelchair: Boolean(flags & WHEELCHAIR), companion: Boolean(flags & COMPANION),
        restricted_view: Boolean(flags & RESTRICTED_VIEW), blocked: Boolean(flags & BLOCKED),
      };
      this.seats.set(id, seat);
      this.list.push(seat);
      section.seats.push(seat);
      section.rowSeats[seat.rowIndex].push(seat);
    });
    // Prices a buyer can filter by; a colour per tier (or per price without tiers).
    this.prices = [...new Set(this.list.map((s) => s.price_cents))].sort((x, y) => x - y);
    const keys = this.tiers.length ? this.tiers.map((t) => t.name) : this.prices.map(String);
    this.colourOf = new Map(keys.map((k, i) => [k, TIER_COLOURS[i % TIER_COLOURS.length]]));
    this.pitch = this._pitch();
    for (const section of this.sections) this._outline(section);
  }

  colour(seat) {
    return this.colourOf.get(seat.tier ?? String(seat.price_cents)) || TIER_COLOURS[0];
  }

  // The usual distance between neighbouring seats of a row: the map's unit of size.
  _pitch() {
    const steps = [];
    for (const section of this.sections) {
      for (const row of section.rowSeats) {
        for (let i = 1; i < row.length && steps.length < 4000; i += 1) {
          steps.push(Math.hypot(row[i].x - row[i - 1].x, row[i].y - row[i - 1].y));
        }
      }
    }
    steps.sort((x, y) => x - y);
    return steps.length ? steps[Math.floor(steps.length / 2)] || 1 : 1;
  }

  _outline(section) {
    const pad = this.pitch * 0.7;
    let [minX, minY, maxX, maxY] = [Infinity, Infinity, -Infinity, -Infinity];
    const points = [];
    for (const s of section.seats) {
      minX = Math.min(minX, s.x); minY = Math.min(minY, s.y);
      maxX = Math.max(maxX, s.x); maxY = Math.max(maxY, s.y);
      for (const [dx, dy] of [[-pad, 0], [pad, 0], [0, -pad], [0, pad]]) points.push([s.x + dx, s.y + dy]);
    }
    section.hull = hull(points);
    section.box = { minX: minX - pad, minY: minY - pad, maxX: maxX + pad, maxY: maxY + pad };
    section.cx = (minX + maxX) / 2;
    section.cy = (minY + maxY) / 2;
    section.prices = [...new Set(section.seats.map((s) => s.price_cents))].sort((x, y) => x - y);
  }

  // "Circle, row C, seat 12" (a numbered section: "Section 111, row C, seat 12").
  name(seat) {
    const section = /^\d+$/.test(seat.section) ? `Section ${seat.section}` : seat.section;
    return `${section}, row ${seat.row}, seat ${seat.number}`;
  }

  marks(seat) {
    const out = [];
    if (seat.wheelchair) out.push("wheelchair space");
    if (seat.companion) out.push("companion seat");
    if (seat.restricted_view) out.push("restricted view");
    return out;
  }

  // The screen reader's label: section, row, seat, price, marks, state.
  label(seat, stateWords) {
    const marks = this.marks(seat);
    return `Section ${seat.section}, row ${seat.row}, seat ${seat.number}, ${money(seat.price_cents, this.currency)}`
      + `${marks.length ? `, ${marks.join(", ")}` : ""}, ${stateWords}`;
  }

  // The seat nearest to (x, y) in plan units, within `reach`; undefined if none.
  seatAt(x, y, reach) {
    let best;
    let bestD = reach * reach;
    for (const s of this.list) {
      const d = (s.x - x) ** 2 + (s.y - y) ** 2;
      if (d < bestD) { bestD = d; best = s; }
    }
    return best;
  }

  sectionAt(x, y) {
    const inside = this.sections.filter((s) => x >= s.box.minX && x <= s.box.maxX && y >= s.box.minY && y <= s.box.maxY);
    if (inside.length === 1) return inside[0];
    const seat = this.seatAt(x, y, this.pitch * 6);
    return seat ? this.sections[seat.sectionIndex] : undefined;
  }

  // The seat a person sees next in a direction on the plan (dx, dy a unit step):
  // the nearest one ahead, with sideways distance counting three times.
  next(seat, dx, dy) {
    let best;
    let bestScore = Infinity;
    const min = this.pitch * 0.3;
    for (const s of this.list) {
      const ax = s.x - seat.x;
      const ay = s.y - seat.y;
      const ahead = ax * dx + ay * dy;
      if (ahead < min) continue;
      const side = Math.abs(ax * dy - ay * dx);
      const score = ahead + 3 * side;
      if (score < bestScore) { bestScore = score; best = s; }
    }
    return best;
  }

  // The first or last seat of the seat's row, as the row is drawn (left to right).
  rowEnd(seat, last) {
    const row = this.sections[seat.sectionIndex].rowSeats[seat.rowIndex];
    const sorted = [...row].sort((p, q) => p.x - q.x || p.y - q.y);
    return last ? sorted[sorted.length - 1] : sorted[0];
  }
}
