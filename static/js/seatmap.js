// The seat map: the venue drawn on a canvas from the seats' plan coordinates, with
// zoom (wheel, pinch, buttons), pan (drag), an overview of where the view is, and
// sections shaded by availability and price when zoomed out (a tap opens one).
// The open section's seats are also buttons over the canvas: they take taps,
// clicks and the keyboard (one tab stop, arrow keys move to the seat visually
// next in that direction, across sections too) and carry the screen-reader labels.
import { money } from "app/common";

const STATE_WORDS = {
  available: "available",
  selected: "selected",
  mine: "held by you",
  held: "held by someone else",
  sold: "sold",
  blocked: "not for sale",
};
const FILL = { selected: "#111111", mine: "#111111", held: "#ced4da", sold: "#6c757d" };
const TOUCH_TARGET = 44; // px: a seat is picked by touch only when drawn at least this far apart
const MOUSE_TARGET = 12;
const SHADE_BELOW = 3.5; // px between seats under which sections are drawn as shaded shapes
const TOOLS = 52; // px: the strip of the zoom buttons
const DRAG = 6; // px a pointer moves before a press becomes a drag

export class SeatMap {
  constructor(view, { plan, onActivate, onSection }) {
    this.view = view;
    this.plan = plan;
    this.seats = plan.seats;
    this.onActivate = onActivate;
    this.onSection = onSection || (() => {});
    this.states = new Map();
    this.filter = { maxPrice: Infinity, access: "" };
    this.canvas = view.querySelector(".seatmap-canvas");
    this.ctx = this.canvas.getContext("2d");
    this.layer = view.querySelector("#seatmap");
    this.overview = view.querySelector(".seatmap-overview");
    this.tip = document.getElementById("seat-tip");
    this.buttons = new Map();
    this.pointers = new Map();
    this.k = 1; this.tx = 0; this.ty = 0;
    this.bounds = this._bounds();
    this._bind();
    new ResizeObserver(() => this._resize()).observe(view);
    this._resize();
    this.open(this._frontSection());
    this.layer.removeAttribute("aria-busy");
  }

  // ---- what a seat shows ----
  describe(id, state) {
    return this.plan.label(this.seats.get(id), STATE_WORDS[state || this.states.get(id) || "available"]);
  }

  render(id, state) {
    if (this.states.get(id) === state) return;
    this.states.set(id, state);
    const button = this.buttons.get(id);
    if (button) this._label(button, id, state);
    if (this.tipFor === id) this._showTip(button);
    this.redraw();
  }

  matches(seat) {
    const { maxPrice, access } = this.filter;
    if (seat.price_cents > maxPrice) return false;
    if (access === "wheelchair") return seat.wheelchair;
    if (access === "companion") return seat.companion;
    if (access === "unrestricted") return !seat.restricted_view;
    return true;
  }

  setFilter(filter) {
    this.filter = { ...this.filter, ...filter };
    this.redraw();
  }

  // ---- the view: plan units to CSS pixels, screen = plan * k + t ----
  _bounds() {
    const pad = this.plan.pitch * 2;
    const b = { minX: Infinity, minY: Infinity, maxX: -Infinity, maxY: -Infinity };
    const grow = (x0, y0, x1, y1) => {
      b.minX = Math.min(b.minX, x0); b.minY = Math.min(b.minY, y0);
      b.maxX = Math.max(b.maxX, x1); b.maxY = Math.max(b.maxY, y1);
    };
    for (const s of this.plan.sections) grow(s.box.minX, s.box.minY, s.box.maxX, s.box.maxY);
    const st = this.plan.stage;
    if (st) grow(st.x, st.y, st.x + st.width, st.y + st.height);
    if (b.minX === Infinity) grow(0, 0, 1, 1);
    return { minX: b.minX - pad, minY: b.minY - pad, maxX: b.maxX + pad, maxY: b.maxY + pad };
  }

  _resize() {
    const rect = this.view.getBoundingClientRect();
    const wasFit = !this.w || this.k <= this.fitK * 1.001;
    this.w = rect.width; this.h = rect.height;
    const dpr = window.devicePixelRatio || 1;
    this.canvas.width = Math.round(this.w * dpr);
    this.canvas.height = Math.round(this.h * dpr);
    const b = this.bounds;
    // The zoom buttons keep a strip on the right: on open they cover no seat.
    this.fitK = Math.min((this.w - TOOLS) / (b.maxX - b.minX), this.h / (b.maxY - b.minY));
    this.minK = this.fitK * 0.8;
    this.maxK = Math.max(this.fitK, 72 / this.plan.pitch);
    if (wasFit) this.fit(); else this.redraw();
  }

  fit() {
    const b = this.bounds;
    this._set(this.fitK, (this.w - TOOLS - (b.maxX - b.minX) * this.fitK) / 2 - b.minX * this.fitK,
      (this.h - (b.maxY - b.minY) * this.fitK) / 2 - b.minY * this.fitK);
  }

  _set(k, tx, ty) {
    this.k = Math.min(this.maxK, Math.max(this.minK, k));
    // Keep some of the venue in view: it cannot be dragged away entirely.
    const b = this.bounds;
    const margin = 40;
    this.tx = Math.min(this.w - margin - b.minX * this.k, Math.max(margin - b.maxX * this.k, tx));
    this.ty = Math.min(this.h - margin - b.minY * this.k, Math.max(margin - b.maxY * this.k, ty));
    this.redraw();
  }

  zoomAt(sx, sy, factor) {
    const k = Math.min(this.maxK, Math.max(this.minK, this.k * factor));
    const px = (sx - this.tx) / this.k;
    const py = (sy - this.ty) / this.k;
    this._set(k, sx - px * k, sy - py * k);
  }

  zoom(factor) { this.zoomAt(this.w / 2, this.h / 2, factor); }

  // Centre plan point (x, y) at scale k.
  centre(x, y, k = this.k) {
    const kk = Math.min(this.maxK, Math.max(this.minK, k));
    this._set(kk, this.w / 2 - x * kk, this.h / 2 - y * kk);
  }

  pitchPx() { return this.plan.pitch * this.k; }

  toPlan(sx, sy) { return [(sx - this.tx) / this.k, (sy - this.ty) / this.k]; }

  zoomToSection(section) {
    const b = section.box;
    const k = Math.min(this.w / (b.maxX - b.minX), this.h / (b.maxY - b.minY)) * 0.95;
    this.centre(section.cx, section.cy, Math.max(k, this.k));
  }

  // ---- the open section: its seats as buttons ----
  _frontSection() {
    const f = this.plan.focal || { x: 0, y: 0 };
    let best = this.plan.sections[0];
    for (const s of this.plan.sections) {
      if (Math.hypot(s.cx - f.x, s.cy - f.y) < Math.hypot(best.cx - f.x, best.cy - f.y)) best = s;
    }
    return best;
  }

  open(section, focusId) {
    if (!section) return;
    if (this.section !== section) {
      this.section = section;
      const fragment = document.createDocumentFragment();
      this.buttons = new Map();
      this.tabStop = undefined;
      for (const seat of section.seats) {
        const button = document.createElement("button");
        button.type = "button";
        button.className = "seat";
        button.tabIndex = -1;
        button.dataset.seatId = seat.id;
        this._label(button, seat.id, this.states.get(seat.id) || "available");
        this.buttons.set(seat.id, button);
        fragment.append(button);
      }
      this.layer.replaceChildren(fragment);
      this.layer.setAttribute("aria-label", `Seats of section ${section.name}`);
      this.onSection(section);
    }
    let id = focusId;
    if (id === undefined || !this.buttons.has(id)) id = this.buttons.has(this.tabStop) ? this.tabStop : this._bestSeat(section).id;
    this._setTabStop(id);
    this.redraw();
  }

  // The section's seat nearest the stage's focal point: where its keyboard focus starts.
  _bestSeat(section) {
    const f = this.plan.focal || { x: section.cx, y: section.cy };
    let best = section.seats[0];
    for (const s of section.seats) if (Math.hypot(s.x - f.x, s.y - f.y) < Math.hypot(best.x - f.x, best.y - f.y)) best = s;
    return best;
  }

  _label(button, id, state) {
    button.dataset.state = state;
    button.setAttribute("aria-label", this.describe(id, state));
    if (state === "available" || state === "selected") button.removeAttribute("aria-disabled");
    else button.setAttribute("aria-disabled", "true");
  }

  _place() {
    const size = Math.max(4, this.pitchPx());
    const pickable = size >= MOUSE_TARGET;
    this.layer.classList.toggle("seatmap-layer--small", !pickable);
    for (const [id, button] of this.buttons) {
      const s = this.seats.get(id);
      button.style.width = `${size}px`;
      button.style.height = `${size}px`;
      button.style.transform = `translate(${s.x * this.k + this.tx - size / 2}px, ${s.y * this.k + this.ty - size / 2}px)`;
    }
  }

  _setTabStop(id) {
    if (this.tabStop !== undefined) this.buttons.get(this.tabStop)?.setAttribute("tabindex", "-1");
    this.tabStop = id;
    this.buttons.get(id)?.setAttribute("tabindex", "0");
  }

  focus(id, { fromKeyboard = true } = {}) {
    const seat = this.seats.get(id);
    if (!seat) return;
    this.open(this.plan.sections[seat.sectionIndex], id);
    if (fromKeyboard) this.reveal(id, { minPitch: 28 });
    this.buttons.get(id)?.focus({ preventScroll: true });
  }

  // Bring a seat into view (and away from `avoid`, a client rect such as the
  // selection bar), zooming in to at least minPitch px between seats.
  reveal(id, { minPitch = 0, avoid = null } = {}) {
    const s = this.seats.get(id);
    if (minPitch && this.pitchPx() < minPitch) this.centre(s.x, s.y, minPitch / this.plan.pitch);
    const view = this.view.getBoundingClientRect();
    const half = this.pitchPx() / 2 + 8;
    let sx = s.x * this.k + this.tx;
    let sy = s.y * this.k + this.ty;
    let dx = 0;
    let dy = 0;
    if (sx - half < 0) dx = half - sx; else if (sx + half > this.w) dx = this.w - half - sx;
    if (sy - half < 0) dy = half - sy; else if (sy + half > this.h) dy = this.h - half - sy;
    sx += dx; sy += dy;
    if (avoid && view.top + sy + half > avoid.top && view.top + sy - half < avoid.bottom) {
      dy += avoid.top - (view.top + sy + half);
    }
    if (dx || dy) this._set(this.k, this.tx + dx, this.ty + dy);
  }

  // ---- drawing ----
  redraw() {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = null;
      this._draw();
      this._place();
      this._drawOverview();
    });
  }

  _draw() {
    const ctx = this.ctx;
    const dpr = this.canvas.width / (this.w || 1);
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, this.w, this.h);
    const px = this.pitchPx();
    this._drawStage(ctx);
    if (px < SHADE_BELOW) this._drawSections(ctx);
    else this._drawSeats(ctx, px);
  }

  _drawStage(ctx) {
    const st = this.plan.stage;
    if (!st) return;
    const x = st.x * this.k + this.tx;
    const y = st.y * this.k + this.ty;
    ctx.fillStyle = "#343a40";
    ctx.fillRect(x, y, st.width * this.k, st.height * this.k);
    const size = Math.min(16, st.height * this.k * 0.5);
    if (size >= 7) {
      ctx.fillStyle = "#fff";
      ctx.font = `600 ${size}px system-ui, sans-serif`;
      ctx.textAlign = "center"; ctx.textBaseline = "middle";
      ctx.fillText((st.label || "Stage").toUpperCase(), x + st.width * this.k / 2, y + st.height * this.k / 2);
    }
  }

  // Zoomed out: each section one shape, coloured by its cheapest seat for sale
  // (within the filter) and as solid as the share of its seats still for sale.
  _drawSections(ctx) {
    for (const section of this.plan.sections) {
      let free = 0;
      let cheapest;
      for (const s of section.seats) {
        if (this.states.get(s.id) !== "available" || !this.matches(s)) continue;
        free += 1;
        if (!cheapest || s.price_cents < cheapest.price_cents) cheapest = s;
      }
      ctx.beginPath();
      section.hull.forEach(([x, y], i) => ctx[i ? "lineTo" : "moveTo"](x * this.k + this.tx, y * this.k + this.ty));
      ctx.closePath();
      ctx.globalAlpha = cheapest ? 0.35 + 0.65 * free / section.seats.length : 1;
      ctx.fillStyle = cheapest ? this.plan.colour(cheapest) : "#e9ecef";
      ctx.fill();
      ctx.globalAlpha = 1;
      ctx.strokeStyle = this.section === section ? "#111" : "#fff";
      ctx.lineWidth = this.section === section ? 2 : 1;
      ctx.stroke();
    }
  }

  _drawSeats(ctx, px) {
    const r = this.plan.pitch * 0.42 * this.k;
    const [x0, y0] = this.toPlan(-px, -px);
    const [x1, y1] = this.toPlan(this.w + px, this.h + px);
    const groups = new Map(); // fill -> Path2D
    const faded = new Map();
    const marks = [];
    const rings = [];
    let shape; // draws the current seat's outline into a path
    const add = (map, fill) => {
      if (!map.has(fill)) map.set(fill, new Path2D());
      shape(map.get(fill));
    };
    for (const s of this.plan.list) {
      if (s.x < x0 || s.x > x1 || s.y < y0 || s.y > y1) continue;
      const state = this.states.get(s.id) || "available";
      const sx = s.x * this.k + this.tx;
      const sy = s.y * this.k + this.ty;
      shape = (path) => {
        if (s.wheelchair) path.rect(sx - r, sy - r, 2 * r, 2 * r);
        else if (s.companion) { path.moveTo(sx, sy - r); path.lineTo(sx + r, sy); path.lineTo(sx, sy + r); path.lineTo(sx - r, sy); path.closePath(); } else { path.moveTo(sx + r, sy); path.arc(sx, sy, r, 0, 2 * Math.PI); }
      };
      if (state === "blocked") { rings.push([sx, sy]); continue; }
      const fill = FILL[state] || this.plan.colour(s);
      add(state === "available" && !this.matches(s) ? faded : groups, fill);
      if (px >= 9 && (s.restricted_view || state === "selected" || state === "mine" || px >= 20)) marks.push([s, state, sx, sy]);
    }
    ctx.globalAlpha = 0.2;
    for (const [fill, path] of faded) { ctx.fillStyle = fill; ctx.fill(path); }
    ctx.globalAlpha = 1;
    for (const [fill, path] of groups) { ctx.fillStyle = fill; ctx.fill(path); }
    ctx.strokeStyle = "#adb5bd"; ctx.lineWidth = Math.max(1, r * 0.15);
    for (const [sx, sy] of rings) { ctx.beginPath(); ctx.arc(sx, sy, r * 0.8, 0, 2 * Math.PI); ctx.stroke(); }
    this._drawMarks(ctx, marks, r, px);
    if (px >= 10) this._drawRowNames(ctx, px, x0, y0, x1, y1);
  }

  _drawMarks(ctx, marks, r, px) {
    ctx.textAlign = "center"; ctx.textBaseline = "middle";
    ctx.font = `600 ${Math.min(14, r)}px system-ui, sans-serif`;
    for (const [s, state, sx, sy] of marks) {
      if (state === "mine") {
        ctx.strokeStyle = "#f0a500"; ctx.lineWidth = Math.max(2, r * 0.25);
        ctx.beginPath(); ctx.arc(sx, sy, r * 1.05, 0, 2 * Math.PI); ctx.stroke();
      }
      if (s.restricted_view && state !== "sold" && state !== "held") {
        ctx.strokeStyle = "#fff"; ctx.lineWidth = Math.max(1.5, r * 0.2);
        ctx.beginPath(); ctx.moveTo(sx - r * 0.6, sy + r * 0.6); ctx.lineTo(sx + r * 0.6, sy - r * 0.6); ctx.stroke();
      }
      if (px < 20) continue;
      const text = state === "selected" ? "✓" : state === "mine" ? "★" : s.wheelchair ? "♿" : String(s.number);
      ctx.fillStyle = state === "held" ? "#212529" : "#fff";
      ctx.fillText(text, sx, sy + 0.5);
    }
  }

  // Row names beyond both ends of each row, in the aisle, never on a seat.
  _drawRowNames(ctx, px, x0, y0, x1, y1) {
    ctx.fillStyle = "#495057";
    ctx.font = `600 ${Math.min(13, px * 0.55)}px system-ui, sans-serif`;
    ctx.textAlign = "center"; ctx.textBaseline = "middle";
    for (const section of this.plan.sections) {
      const b = section.box;
      if (b.maxX < x0 || b.minX > x1 || b.maxY < y0 || b.minY > y1) continue;
      section.rowSeats.forEach((row, i) => {
        if (!row.length) return;
        const a = row[0];
        const z = row[row.length - 1];
        const len = Math.hypot(z.x - a.x, z.y - a.y) || 1;
        const ux = row.length > 1 ? (z.x - a.x) / len : 1;
        const uy = row.length > 1 ? (z.y - a.y) / len : 0;
        const d = this.plan.pitch * 1.1;
        for (const [x, y] of [[a.x - ux * d, a.y - uy * d], [z.x + ux * d, z.y + uy * d]]) {
          ctx.fillText(section.rows[i], x * this.k + this.tx, y * this.k + this.ty);
        }
      });
    }
  }

  _drawOverview() {
    const o = this.overview;
    const zoomedIn = this.k > this.fitK * 1.15;
    o.hidden = !zoomedIn;
    if (!zoomedIn) return;
    const b = this.bounds;
    const w = 112;
    const h = Math.round(w * (b.maxY - b.minY) / (b.maxX - b.minX));
    const dpr = window.devicePixelRatio || 1;
    if (o.width !== w * dpr) { o.width = w * dpr; o.height = h * dpr; o.style.width = `${w}px`; o.style.height = `${h}px`; }
    const ctx = o.getContext("2d");
    const s = w / (b.maxX - b.minX);
    this.overviewScale = s;
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);
    ctx.fillStyle = "#adb5bd";
    for (const section of this.plan.sections) {
      ctx.beginPath();
      section.hull.forEach(([x, y], i) => ctx[i ? "lineTo" : "moveTo"]((x - b.minX) * s, (y - b.minY) * s));
      ctx.fill();
    }
    const st = this.plan.stage;
    if (st) { ctx.fillStyle = "#343a40"; ctx.fillRect((st.x - b.minX) * s, (st.y - b.minY) * s, st.width * s, st.height * s); }
    const [vx0, vy0] = this.toPlan(0, 0);
    const [vx1, vy1] = this.toPlan(this.w, this.h);
    ctx.strokeStyle = "#d63384"; ctx.lineWidth = 2;
    ctx.strokeRect((vx0 - b.minX) * s, (vy0 - b.minY) * s, (vx1 - vx0) * s, (vy1 - vy0) * s);
  }

  // ---- input ----
  _bind() {
    const v = this.view;
    v.addEventListener("wheel", (e) => {
      e.preventDefault();
      const r = v.getBoundingClientRect();
      this.zoomAt(e.clientX - r.left, e.clientY - r.top, Math.exp(-e.deltaY * (e.deltaMode ? 0.05 : 0.0015)));
    }, { passive: false });
    v.addEventListener("pointerdown", (e) => this._down(e));
    v.addEventListener("pointermove", (e) => this._move(e));
    for (const type of ["pointerup", "pointercancel"]) v.addEventListener(type, (e) => this._up(e));
    this.layer.addEventListener("click", (e) => this._click(e));
    this.layer.addEventListener("keydown", (e) => this._key(e));
    this.layer.addEventListener("focusin", (e) => this._showTip(e.target.closest(".seat")));
    this.layer.addEventListener("focusout", () => this._hideTip());
    this.layer.addEventListener("mouseover", (e) => this._showTip(e.target.closest(".seat")));
    this.layer.addEventListener("mouseleave", () => this._hideTip());
    const onOverview = (e) => {
      const r = this.overview.getBoundingClientRect();
      const b = this.bounds;
      this.centre(b.minX + (e.clientX - r.left) / this.overviewScale, b.minY + (e.clientY - r.top) / this.overviewScale);
    };
    this.overview.addEventListener("pointerdown", (e) => { e.stopPropagation(); this.overviewDrag = true; this.overview.setPointerCapture(e.pointerId); onOverview(e); });
    this.overview.addEventListener("pointermove", (e) => { if (this.overviewDrag) onOverview(e); });
    this.overview.addEventListener("pointerup", () => { this.overviewDrag = false; });
  }

  _down(e) {
    if (e.target.closest(".seatmap-tools")) return;
    this.lastPointer = e.pointerType;
    this.pointers.set(e.pointerId, { x: e.clientX, y: e.clientY, x0: e.clientX, y0: e.clientY });
    this.dragged = false;
  }

  _move(e) {
    const p = this.pointers.get(e.pointerId);
    if (!p) return;
    const [a, b] = [...this.pointers.values()];
    if (this.pointers.size === 2 && b) {
      const before = Math.hypot(a.x - b.x, a.y - b.y);
      p.x = e.clientX; p.y = e.clientY;
      const after = Math.hypot(a.x - b.x, a.y - b.y);
      const r = this.view.getBoundingClientRect();
      if (before > 0) this.zoomAt((a.x + b.x) / 2 - r.left, (a.y + b.y) / 2 - r.top, after / before);
      this.dragged = true;
      return;
    }
    if (!this.dragged && Math.hypot(e.clientX - p.x0, e.clientY - p.y0) < DRAG) return;
    if (!this.dragged) { this.dragged = true; this.view.setPointerCapture(e.pointerId); this._hideTip(); }
    this._set(this.k, this.tx + e.clientX - p.x, this.ty + e.clientY - p.y);
    p.x = e.clientX; p.y = e.clientY;
  }

  _up(e) {
    if (!this.pointers.delete(e.pointerId)) return;
    if (this.dragged) {
      // The click that follows a drag is not a choice.
      this.swallowClick = true;
      setTimeout(() => { this.swallowClick = false; }, 0);
      return;
    }
    if (e.type === "pointerup" && !e.target.closest(".seat") && !e.target.closest(".seatmap-tools")) {
      const r = this.view.getBoundingClientRect();
      const [x, y] = this.toPlan(e.clientX - r.left, e.clientY - r.top);
      const section = this.plan.sectionAt(x, y);
      if (section) {
        this.open(section);
        if (this.pitchPx() < TOUCH_TARGET) this.zoomToSection(section);
      }
    }
  }

  _click(e) {
    const button = e.target.closest(".seat");
    if (!button || this.swallowClick) return;
    const id = Number(button.dataset.seatId);
    const seat = this.seats.get(id);
    const pointer = e.detail === 0 ? "keyboard" : this.lastPointer;
    this.lastPointer = undefined;
    const need = pointer === "touch" || pointer === "pen" ? TOUCH_TARGET : pointer === "mouse" ? MOUSE_TARGET : 0;
    this._setTabStop(id);
    if (this.pitchPx() < need) {
      // Too small to be sure which seat a finger meant: come closer first.
      this.centre(seat.x, seat.y, need / this.plan.pitch * 1.05);
      return;
    }
    this.onActivate(id);
  }

  _key(e) {
    const button = e.target.closest(".seat");
    if (!button) return;
    this.lastPointer = undefined;
    if (e.key === "Escape") { this._hideTip(); return; }
    const seat = this.seats.get(Number(button.dataset.seatId));
    const step = { ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1] }[e.key];
    let target;
    if (step) target = this.plan.next(seat, ...step);
    else if (e.key === "Home" || e.key === "End") target = this.plan.rowEnd(seat, e.key === "End");
    else if (e.key === "+" || e.key === "=") { this.zoom(1.5); e.preventDefault(); return; } else if (e.key === "-") { this.zoom(1 / 1.5); e.preventDefault(); return; } else return;
    e.preventDefault();
    if (target) this.focus(target.id);
  }

  _showTip(button) {
    if (!button || !this.tip) return;
    const id = Number(button.dataset.seatId);
    const s = this.seats.get(id);
    this.tipFor = id;
    const marks = this.plan.marks(s);
    this.tip.textContent = `${this.plan.name(s)} · ${money(s.price_cents, this.plan.currency)}${marks.length ? ` · ${marks.join(", ")}` : ""} · ${STATE_WORDS[button.dataset.state]}`;
    this.tip.hidden = false;
    const wrap = this.tip.offsetParent || document.body;
    const b = button.getBoundingClientRect();
    const w = wrap.getBoundingClientRect();
    const tipWidth = this.tip.offsetWidth;
    const left = Math.min(Math.max(0, b.left - w.left + b.width / 2 - tipWidth / 2), w.width - tipWidth);
    this.tip.style.left = `${left}px`;
    const above = b.top - w.top - this.tip.offsetHeight - 6;
    this.tip.style.top = `${above >= 0 ? above : b.bottom - w.top + 6}px`;
  }

  _hideTip() {
    if (this.tip) this.tip.hidden = true;
    this.tipFor = undefined;
  }
}
