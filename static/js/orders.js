// "My orders": the buyer's orders, newest first.
import { el, formatDate, getJSON, money } from "app/common";

const box = document.getElementById("orders");

function brandName(brand) {
  const names = { visa: "Visa", mastercard: "Mastercard", amex: "American Express", discover: "Discover" };
  return names[(brand || "").toLowerCase()] || (brand ? brand[0].toUpperCase() + brand.slice(1) : "Card");
}

async function show() {
  let orders;
  let events = [];
  try {
    [orders, events] = await Promise.all([getJSON("/api/v1/orders"), getJSON("/api/v1/events")]);
  } catch (err) {
    box.replaceChildren(el("div", { class: "alert alert-danger", role: "alert",
      text: "We could not load your orders just now. Please reload the page in a moment." }));
    box.removeAttribute("aria-busy");
    return;
  }
  const eventsById = new Map(events.map((e) => [e.id, e]));
  box.removeAttribute("aria-busy");
  if (!orders.length) {
    box.replaceChildren(el("p", {}, "You have no orders yet. ", el("a", { href: "/", text: "Find an event" }), "."));
    return;
  }
  const list = el("ul", { class: "list-unstyled row g-3", "data-testid": "order-list" });
  for (const order of orders) {
    const event = eventsById.get(order.event_id);
    const seats = order.seats.map((s) => s.label).join(", ");
    list.append(el("li", { class: "col-12 col-md-6" },
      el("article", { class: "card h-100" },
        el("div", { class: "card-body" },
          el("h2", { class: "h5" }, el("a", { href: `/orders/${order.id}`, text: `Order ${order.id}` }),
            " ", el("span", { class: `badge ${order.status === "paid" ? "text-bg-success" : "text-bg-secondary"}`,
              text: { paid: "Paid", partially_refunded: "Partly refunded" }[order.status] || "Refunded" })),
          el("p", { class: "mb-1", text: event ? event.name : `Event ${order.event_id}` }),
          event ? el("p", { class: "mb-1 small text-body-secondary", text: `${event.venue} · ${formatDate(event.starts_at, event.timezone)}` }) : null,
          el("p", { class: "mb-1", text: `Seats: ${seats}` }),
          el("p", { class: "mb-0 fw-semibold", text: `${money(order.amount_cents, order.currency)} · ${brandName(order.payment && order.payment.brand)} ending in ${order.payment ? order.payment.last4 : "····"}` })))));
  }
  box.replaceChildren(list);
}

show();
