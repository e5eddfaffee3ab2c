// The venue page: the plan drawn from the layout's seats (stage, focal point, every seat
// placed where the layout puts it, coloured by tier; blocked seats grey, wheelchair ringed).
const svg = document.getElementById("venue-plan");
const legend = document.getElementById("venue-plan-legend");
const NS = "http://www.w3.org/2000/svg";
const TIER_COLOURS = ["#0d6efd", "#198754", "#fd7e14", "#6f42c1", "#20c997", "#d63384", "#6c757d"];

function node(tag, attrs) {
  const n = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, v);
  return n;
}

async function draw() {
  const response = await fetch(svg.dataset.url, { headers: { Accept: "application/json" } });
  if (!response.ok) {
    legend.textContent = "The plan could not be loaded.";
    return;
  }
  const data = await response.json();
  if (!data.plan) {
    legend.textContent = "This venue has no plan (it was made without a layout).";
    return;
  }
  svg.setAttribute("viewBox", `0 0 ${data.plan.width} ${data.plan.height}`);
  // A layout may use any unit: sizes follow the seats' own spacing, not pixels.
  const unit = seatSpacing(data.seats);
  const st = data.stage;
  svg.append(node("rect", { x: st.x, y: st.y, width: st.width, height: st.height, rx: unit / 2, class: "plan-stage" }));
  const label = node("text", { x: st.x + st.width / 2, y: st.y + st.height / 2, class: "plan-stage-label",
                               "font-size": Math.min(st.height * 0.4, st.width / 8) });
  label.textContent = st.label || "Stage";
  svg.append(label);
  svg.append(node("circle", { cx: data.focal_point.x, cy: data.focal_point.y, r: unit / 2, class: "plan-focal" }));
  const colour = new Map(data.tiers.map((t, i) => [t, TIER_COLOURS[i % TIER_COLOURS.length]]));
  const fragment = document.createDocumentFragment();
  for (const [x, y, tier, blocked, wheelchair, name] of data.seats) {
    const seat = node("circle", { cx: x, cy: y, r: unit * 0.4, fill: colour.get(tier) || "#6c757d" });
    if (wheelchair) seat.setAttribute("stroke-width", unit * 0.15);
    if (blocked) seat.setAttribute("class", "plan-seat--blocked");
    if (wheelchair) seat.classList.add("plan-seat--wheelchair");
    const title = document.createElementNS(NS, "title");
    title.textContent = `${name} · ${tier}${blocked ? " · blocked" : ""}${wheelchair ? " · wheelchair" : ""}`;
    seat.append(title);
    fragment.append(seat);
  }
  svg.append(fragment);
  legend.replaceChildren(...data.tiers.map((t) => {
    const item = document.createElement("span");
    item.className = "me-3 d-inline-flex align-items-center gap-1";
    const dot = document.createElement("span");
    dot.className = "d-inline-block rounded-circle";
    dot.style.width = dot.style.height = "0.8rem";
    dot.style.background = colour.get(t);
    item.append(dot, t);
    return item;
  }), Object.assign(document.createElement("span"), {
    className: "me-3 d-inline-flex align-items-center text-nowrap", textContent: "grey: blocked",
  }));
}

draw();

// The usual distance between a seat and the next one of its row (seats come in plan
// order, a row after another): the median of consecutive distances.
function seatSpacing(seats) {
  const steps = [];
  for (let i = 1; i < seats.length; i++) {
    const d = Math.hypot(seats[i][0] - seats[i - 1][0], seats[i][1] - seats[i - 1][1]);
    if (d > 0) steps.push(d);
  }
  if (!steps.length) return 10;
  steps.sort((a, b) => a - b);
  return steps[Math.floor(steps.length / 2)];
}
