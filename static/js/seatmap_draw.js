// Drawing the seat map's canvas and its overview (see seatmap.js for the view).
const FILL = { selected: "#111111", mine: "#111111", held: "#ced4da", sold: "#6c757d" };
const SHADE_BELOW = 3.5; // px between seats under which sections are drawn as shaded shapes

export function draw(m) {
  const ctx = m.ctx;
  const dpr = m.canvas.width / (m.w || 1);
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, m.w, m.h);
  const px = m.pitchPx();
  drawStage(m, ctx);
  if (px < SHADE_BELOW) {
    drawSections(m, ctx);
    drawMine(m, ctx);
  } else {
    drawSeats(m, ctx, px);
  }
}

// Zoomed out, seats are not drawn one by one: the buyer's own held seats still
// show, as ringed dots, wherever on the venue they are.
function drawMine(m, ctx) {
  ctx.fillStyle = FILL.mine;
  ctx.strokeStyle = "#f0a500";
  ctx.lineWidth = 2;
  for (const [id, state] of m.states) {
    if (state !== "mine") continue;
    const s = m.seats.get(id);
    ctx.beginPath();
    ctx.arc(s.x * m.k + m.tx, s.y * m.k + m.ty, 4, 0, 2 * Math.PI);
    ctx.fill();
    ctx.stroke();
  }
}

function drawStage(m, ctx) {
  const st = m.plan.stage;
  if (!st) return;
  const x = st.x * m.k + m.tx;
  const y = st.y * m.k + m.ty;
  ctx.fillStyle = "#343a40";
  ctx.fillRect(x, y, st.width * m.k, st.height * m.k);
  const size = Math.min(16, st.height * m.k * 0.5);
  if (size >= 7) {
    ctx.fillStyle = "#fff";
    ctx.font = `600 ${size}px system-ui, sans-serif`;
    ctx.textAlign = "center"; ctx.textBaseline = "middle";
    ctx.fillText((st.label || "Stage").toUpperCase(), x + st.width * m.k / 2, y + st.height * m.k / 2);
  }
}

// Zoomed out: each section one shape, coloured by its cheapest seat for sale
// (within the filter) and as solid as the share of its seats still for sale.
function drawSections(m, ctx) {
  for (const section of m.plan.sections) {
    let free = 0;
    let cheapest;
    for (const s of section.seats) {
      if (m.states.get(s.id) !== "available" || !m.matches(s)) continue;
      free += 1;
      if (!cheapest || s.price_cents < cheapest.price_cents) cheapest = s;
    }
    ctx.beginPath();
    section.hull.forEach(([x, y], i) => ctx[i ? "lineTo" : "moveTo"](x * m.k + m.tx, y * m.k + m.ty));
    ctx.closePath();
    ctx.globalAlpha = cheapest ? 0.35 + 0.65 * free / section.seats.length : 1;
    ctx.fillStyle = cheapest ? m.plan.colour(cheapest) : "#e9ecef";
    ctx.fill();
    ctx.globalAlpha = 1;
    ctx.strokeStyle = m.section === section ? "#111" : "#fff";
    ctx.lineWidth = m.section === section ? 2 : 1;
    ctx.stroke();
  }
}

function drawSeats(m, ctx, px) {
  const r = m.plan.pitch * 0.42 * m.k;
  const [x0, y0] = m.toPlan(-px, -px);
  const [x1, y1] = m.toPlan(m.w + px, m.h + px);
  const groups = new Map(); // fill -> Path2D
  const faded = new Map();
  const marks = [];
  const rings = [];
  let shape; // draws the current seat's outline into a path
  const add = (map, fill) => {
    if (!map.has(fill)) map.set(fill, new Path2D());
    shape(map.get(fill));
  };
  for (const s of m.plan.list) {
    if (s.x < x0 || s.x > x1 || s.y < y0 || s.y > y1) continue;
    const state = m.states.get(s.id) || "available";
    const sx = s.x * m.k + m.tx;
    const sy = s.y * m.k + m.ty;
    shape = (path) => {
      if (s.wheelchair) path.rect(sx - r, sy - r, 2 * r, 2 * r);
      else if (s.companion) { path.moveTo(sx, sy - r); path.lineTo(sx + r, sy); path.lineTo(sx, sy + r); path.lineTo(sx - r, sy); path.closePath(); } else { path.moveTo(sx + r, sy); path.arc(sx, sy, r, 0, 2 * Math.PI); }
    };
    if (state === "blocked") { rings.push([sx, sy]); continue; }
    const fill = FILL[state] || m.plan.colour(s);
    add(state === "available" && !m.matches(s) ? faded : groups, fill);
    if (px >= 9 && (s.restricted_view || state === "selected" || state === "mine" || px >= 20)) marks.push([s, state, sx, sy]);
  }
  ctx.globalAlpha = 0.2;
  for (const [fill, path] of faded) { ctx.fillStyle = fill; ctx.fill(path); }
  ctx.globalAlpha = 1;
  for (const [fill, path] of groups) { ctx.fillStyle = fill; ctx.fill(path); }
  ctx.strokeStyle = "#adb5bd"; ctx.lineWidth = Math.max(1, r * 0.15);
  for (const [sx, sy] of rings) { ctx.beginPath(); ctx.arc(sx, sy, r * 0.8, 0, 2 * Math.PI); ctx.stroke(); }
  drawMarks(m, ctx, marks, r, px);
  if (px >= 10) drawRowNames(m, ctx, px);
}

function drawMarks(m, ctx, marks, r, px) {
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

// Row names of the open section beyond both ends of each row, in the aisle, never
// on a seat (a neighbour's names there too would read as doubled).
function drawRowNames(m, ctx, px) {
  ctx.fillStyle = "#495057";
  ctx.font = `600 ${Math.min(13, px * 0.55)}px system-ui, sans-serif`;
  ctx.textAlign = "center"; ctx.textBaseline = "middle";
  for (const section of [m.section].filter(Boolean)) {
    section.rowSeats.forEach((row, i) => {
      if (!row.length) return;
      const a = row[0];
      const z = row[row.length - 1];
      const len = Math.hypot(z.x - a.x, z.y - a.y) || 1;
      const ux = row.length > 1 ? (z.x - a.x) / len : 1;
      const uy = row.length > 1 ? (z.y - a.y) / len : 0;
      const d = m.plan.pitch * 1.1;
      for (const [x, y] of [[a.x - ux * d, a.y - uy * d], [z.x + ux * d, z.y + uy * d]]) {
        ctx.fillText(section.rows[i], x * m.k + m.tx, y * m.k + m.ty);
      }
    });
  }
}

export function drawOverview(m) {
  const o = m.overview;
  const zoomedIn = m.k > m.fitK * 1.15;
  o.hidden = !zoomedIn;
  if (!zoomedIn) return;
  const b = m.bounds;
  const w = 112;
  const h = Math.round(w * (b.maxY - b.minY) / (b.maxX - b.minX));
  const dpr = window.devicePixelRatio || 1;
  if (o.width !== w * dpr) { o.width = w * dpr; o.height = h * dpr; o.style.width = `${w}px`; o.style.height = `${h}px`; }
  const ctx = o.getContext("2d");
  const s = w / (b.maxX - b.minX);
  m.overviewScale = s;
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, w, h);
  ctx.fillStyle = "#adb5bd";
  for (const section of m.plan.sections) {
    ctx.beginPath();
    section.hull.forEach(([x, y], i) => ctx[i ? "lineTo" : "moveTo"]((x - b.minX) * s, (y - b.minY) * s));
    ctx.fill();
  }
  const st = m.plan.stage;
  if (st) { ctx.fillStyle = "#343a40"; ctx.fillRect((st.x - b.minX) * s, (st.y - b.minY) * s, st.width * s, st.height * s); }
  const [vx0, vy0] = m.toPlan(0, 0);
  const [vx1, vy1] = m.toPlan(m.w, m.h);
  ctx.strokeStyle = "#d63384"; ctx.lineWidth = 2;
  ctx.strokeRect((vx0 - b.minX) * s, (vy0 - b.minY) * s, (vx1 - vx0) * s, (vy1 - vy0) * s);
}

