// The seat map: the venue drawn on a canvas from the seats' plan coordinates, with
// zoom (wheel, pinch, buttons), pan (drag), an overview of where the view is, and
// sections shaded by availability and price when zoomed out (a tap opens one).
// The open section's seats are also buttons over the canvas: they take taps,
// clicks and the keyboard (one tab stop, arrow keys move to the seat visually
// next in that direction, across sections too) and carry the screen-reader labels.
import { money } from "app/common";
import { draw, drawOverview } from "app/seatmap_draw";

const STATE_WORDS = {
  available: "available",
  selected: "selected",
  mine: "held by you",
  held: "held by someone else",
  sold: "sold",
  blocked: "not for sale",
};
const TOUCH_TARGET = 44; // px: a seat is picked by touch only when drawn at least this far apart
const MOUSE_TARGET = 12;
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

  // The buttons zoom towards the open section while it is in view, else the middle.
  zoom(factor) {
    const s = this.section;
    const sx = s ? s.cx * this.k + this.tx : -1;
    const sy = s ? s.cy * this.k + this.ty : -1;
    if (sx >= 0 && sx <= this.w && sy >= 0 && sy <= this.h) this.zoomAt(sx, sy, factor);
    else this.zoomAt(this.w / 2, this.h / 2, factor);
  }

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
    // Out of sight (a jump to another section): bring it to the middle, not the edge.
    if (sx < 0 || sx > this.w || sy < 0 || sy > this.h) {
      this.centre(s.x, s.y);
      sx = s.x * this.k + this.tx;
      sy = s.y * this.k + this.ty;
    }
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

  _draw() { draw(this); }

  _drawOverview() { drawOverview(this); }

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
    this.swallowClick = false;   // a new touch: its own click counts
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
      return;
    }
    if (e.type === "pointerup" && !e.target.closest(".seat") && !e.target.closest(".seatmap-tools")) {
      const r = this.view.getBoundingClientRect();
      const [x, y] = this.toPlan(e.clientX - r.left, e.clientY - r.top);
      const section = this.plan.sectionAt(x, y);
      if (section) {
        this.open(section);
        if (this.pitchPx() < TOUCH_TARGET) this.zoomToSection(section);
        // This tap's click may come after the section's seats are drawn, on the
        // seat now under the finger: it belongs to the tap that opened the section.
        this.swallowClick = true;
      }
    }
  }

  _click(e) {
    // The click of a drag or of the tap that opened a section picks nothing; a
    // keyboard's click (detail 0) is always a choice. The next pointerdown resets it.
    const swallow = this.swallowClick && e.detail !== 0;
    this.swallowClick = false;
    const button = e.target.closest(".seat");
    if (!button || swallow) return;
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
