// The seat map: drawn from the seat data (sections, rows, numbers; a gap in the
// numbers of a row is an aisle), one button per seat, one tab stop for the whole
// map (arrow keys move between seats), and a price tip on hover and focus.
import { el, money } from "app/common";

const STATE_WORDS = {
  available: "available",
  selected: "selected",
  mine: "held by you",
  held: "held by someone else",
  sold: "sold",
  blocked: "not for sale",
};

export class SeatMap {
  constructor(container, { seats, sections, currency, onActivate }) {
    this.container = container;
    this.currency = currency;
    this.onActivate = onActivate;
    this.seats = new Map(seats.map((s) => [s.id, s]));
    this.buttons = new Map(); // id -> button
    this.grid = []; // rows in reading order: [{seats: [id...] by number, cols: [col...]}]
    this.position = new Map(); // id -> [rowIndex, indexInRow]
    this.tip = document.getElementById("seat-tip");
    this._draw(sections);
  }

  _draw(sections) {
    const bySection = new Map();
    for (const seat of this.seats.values()) {
      if (!bySection.has(seat.section)) bySection.set(seat.section, new Map());
      const rows = bySection.get(seat.section);
      if (!rows.has(seat.row)) rows.set(seat.row, []);
      rows.get(seat.row).push(seat);
    }
    // The event's own order of sections and rows; anything it does not name goes last.
    const sectionOrder = (sections || []).map((s) => s.name);
    for (const name of bySection.keys()) if (!sectionOrder.includes(name)) sectionOrder.push(name);

    const fragment = document.createDocumentFragment();
    for (const sectionName of sectionOrder) {
      const rows = bySection.get(sectionName);
      if (!rows) continue;
      const declared = (sections || []).find((s) => s.name === sectionName);
      const rowOrder = declared ? [...declared.rows] : [];
      for (const r of rows.keys()) if (!rowOrder.includes(r)) rowOrder.push(r);

      let low = Infinity;
      let high = -Infinity;
      for (const list of rows.values()) {
        for (const s of list) {
          low = Math.min(low, s.number);
          high = Math.max(high, s.number);
        }
      }
      const headingId = `section-${this.grid.length}-title`;
      const sectionBox = el("div", { class: "seat-section", role: "group", "aria-labelledby": headingId },
        el("h3", { class: "h6 seat-section-title", id: headingId, text: `Section ${sectionName}` }));
      for (const rowName of rowOrder) {
        const list = (rows.get(rowName) || []).sort((a, b) => a.number - b.number);
        if (!list.length) continue;
        const seatsBox = el("div", { class: "seat-row-seats" });
        seatsBox.style.gridTemplateColumns = `repeat(${high - low + 1}, var(--seat-size))`;
        const gridRow = { seats: [], cols: [] };
        for (const seat of list) {
          const button = el("button", {
            type: "button", class: "seat", "data-seat-id": seat.id, tabindex: "-1",
            "data-number": seat.number,
          });
          button.style.gridColumn = String(seat.number - low + 1);
          this.buttons.set(seat.id, button);
          this.position.set(seat.id, [this.grid.length, gridRow.seats.length]);
          gridRow.seats.push(seat.id);
          gridRow.cols.push(seat.number - low);
          seatsBox.append(button);
          this.render(seat.id, "available");
        }
        this.grid.push(gridRow);
        const label = el("span", { class: "row-label", "aria-hidden": "true", text: rowName });
        sectionBox.append(el("div", { class: "seat-row", role: "group", "aria-label": `Row ${rowName}` },
          label, seatsBox, label.cloneNode(true)));
      }
      fragment.append(sectionBox);
    }
    this.container.replaceChildren(fragment);
    this.container.removeAttribute("aria-busy");
    // A map wider than the screen opens at its middle, facing the stage.
    this.container.scrollLeft = (this.container.scrollWidth - this.container.clientWidth) / 2;
    if (this.grid.length) this._setTabStop(this.grid[0].seats[0]);

    this.container.addEventListener("click", (e) => {
      const button = e.target.closest(".seat");
      if (button) this.onActivate(Number(button.dataset.seatId));
    });
    this.container.addEventListener("keydown", (e) => this._key(e));
    this.container.addEventListener("focusin", (e) => this._showTip(e.target.closest(".seat")));
    this.container.addEventListener("focusout", () => this._hideTip());
    this.container.addEventListener("mouseover", (e) => this._showTip(e.target.closest(".seat")));
    this.container.addEventListener("mouseleave", () => this._hideTip());
  }

  describe(id, state) {
    const s = this.seats.get(id);
    return `Section ${s.section}, row ${s.row}, seat ${s.number}, ${money(s.price_cents, this.currency)}, ${STATE_WORDS[state]}`;
  }

  // Show one seat in one of the five states.
  render(id, state) {
    const button = this.buttons.get(id);
    if (!button || button.dataset.state === state) return;
    button.dataset.state = state;
    button.className = `seat seat--${state}`;
    button.setAttribute("aria-label", this.describe(id, state));
    // Taken seats stay focusable (a screen reader can still hear them) but say they cannot be chosen.
    if (state === "held" || state === "sold" || state === "mine" || state === "blocked") button.setAttribute("aria-disabled", "true");
    else button.removeAttribute("aria-disabled");
    if (this.tipFor === id) this._showTip(button);
  }

  _setTabStop(id) {
    if (this.tabStop !== undefined) this.buttons.get(this.tabStop)?.setAttribute("tabindex", "-1");
    this.tabStop = id;
    this.buttons.get(id)?.setAttribute("tabindex", "0");
  }

  _key(e) {
    const button = e.target.closest(".seat");
    if (!button) return;
    if (e.key === "Escape") {
      this._hideTip();
      return;
    }
    const [r, i] = this.position.get(Number(button.dataset.seatId));
    const row = this.grid[r];
    let target;
    switch (e.key) {
      case "ArrowLeft": target = row.seats[Math.max(0, i - 1)]; break;
      case "ArrowRight": target = row.seats[Math.min(row.seats.length - 1, i + 1)]; break;
      case "Home": target = row.seats[0]; break;
      case "End": target = row.seats[row.seats.length - 1]; break;
      case "ArrowUp": target = this._nearest(r - 1, row.cols[i]); break;
      case "ArrowDown": target = this._nearest(r + 1, row.cols[i]); break;
      default: return;
    }
    e.preventDefault();
    if (target !== undefined) this.focus(target);
  }

  // The seat of another row closest to the same column.
  _nearest(r, col) {
    const row = this.grid[r];
    if (!row) return undefined;
    let best = 0;
    row.cols.forEach((c, k) => {
      if (Math.abs(c - col) < Math.abs(row.cols[best] - col)) best = k;
    });
    return row.seats[best];
  }

  focus(id) {
    this._setTabStop(id);
    this.buttons.get(id)?.focus();
  }

  _showTip(button) {
    if (!button || !this.tip) return;
    const id = Number(button.dataset.seatId);
    const s = this.seats.get(id);
    this.tipFor = id;
    this.tip.textContent = `Row ${s.row}, seat ${s.number} · ${money(s.price_cents, this.currency)} · ${STATE_WORDS[button.dataset.state]}`;
    this.tip.hidden = false;
    const wrap = this.tip.offsetParent || document.body;
    const b = button.getBoundingClientRect();
    const w = wrap.getBoundingClientRect();
    const tipWidth = this.tip.offsetWidth;
    const left = Math.min(Math.max(0, b.left - w.left + b.width / 2 - tipWidth / 2), w.width - tipWidth);
    this.tip.style.left = `${left}px`;
    this.tip.style.top = `${b.top - w.top - this.tip.offsetHeight - 6}px`;
  }

  _hideTip() {
    if (this.tip) this.tip.hidden = true;
    this.tipFor = undefined;
  }
}
