// The live dashboard: joins the event's organizer room over Socket.IO and redraws the
// figures and the chart (Chart.js) at every `dashboard` message (sent when the sale
// changes, at most one a second).
import { io } from "socket.io-client";
import { money, page } from "app/common";

const state = document.getElementById("live-state");
const sectionsBody = document.getElementById("live-sections");
let chart = null;

function setState(name, text) {
  state.dataset.state = name;
  state.textContent = text;
}

function put(key, value) {
  const target = document.querySelector(`[data-live="${key}"]`);
  if (target) target.textContent = value;
}

function ms(value) {
  return value == null ? "—" : `${value} ms`;
}

function chartFor(activity) {
  const labels = activity.minutes.map((m) => new Date(m).toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" }));
  if (!window.Chart) return;
  if (!chart) {
    chart = new window.Chart(document.getElementById("activity-chart"), {
      type: "line",
      data: {
        labels,
        datasets: [
          { label: "Holds a minute", data: activity.holds, borderColor: "#0d6efd", backgroundColor: "#0d6efd", tension: 0.2 },
          { label: "Orders a minute", data: activity.orders, borderColor: "#198754", backgroundColor: "#198754", tension: 0.2 },
        ],
      },
      options: {
        animation: false, maintainAspectRatio: false, responsive: true,
        scales: { y: { beginAtZero: true, ticks: { precision: 0 } } },
        plugins: { legend: { position: "bottom" } },
      },
    });
    return;
  }
  chart.data.labels = labels;
  chart.data.datasets[0].data = activity.holds;
  chart.data.datasets[1].data = activity.orders;
  chart.update("none");
}

function show(f) {
  if (!f) return;
  const s = f.sales;
  for (const key of ["available", "held", "sold", "blocked"]) put(key, s.seats[key]);
  put("revenue", money(s.revenue_cents, f.currency));
  put("orders", s.orders);
  put("queue", f.queue ? f.queue.queued + f.queue.pre_queue : "no room");
  put("wait", f.queue && f.queue.expected_wait_s != null ? `${f.queue.expected_wait_s} s` : "—");
  put("declines", f.activity.declines_10min);
  put("errors", f.activity.errors_10min);
  put("p50", ms(f.latency.p50_ms));
  put("p99", ms(f.latency.p99_ms));
  document.getElementById("live-at").textContent = new Date(f.at).toLocaleTimeString();
  sectionsBody.replaceChildren(...s.by_section.map((row) => {
    const tr = document.createElement("tr");
    for (const [value, end] of [[row.section, false], [row.available, true], [row.held, true], [row.sold, true]]) {
      const td = document.createElement("td");
      if (end) td.className = "text-end";
      td.textContent = value;
      tr.append(td);
    }
    return tr;
  }));
  chartFor(f.activity);
}

const socket = io({ reconnectionDelay: 500, reconnectionDelayMax: 5000 });
setState("connecting", "Connecting…");
socket.on("connect", () => {
  socket.emit("join_dashboard", { event_id: page.event_id }, (ack) => {
    if (ack && ack.ok) {
      setState("live", "Live: updates as the sale changes, at most once a second.");
      show(ack.figures);
    } else {
      setState("down", (ack && ack.error && ack.error.message) || "The dashboard is not available.");
    }
  });
});
socket.on("dashboard", (f) => {
  if (f.event_id === page.event_id) show(f);
});
socket.on("disconnect", () => setState("down", "Connection lost. Reconnecting…"));
socket.on("connect_error", () => setState("down", "Connection lost. Reconnecting…"));
