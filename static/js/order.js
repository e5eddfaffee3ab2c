// The confirmation page of one order.
import { el, formatDate, getJSON, money, page } from "app/common";

const box = document.getElementById("order");

function brandName(brand) {
  const names = { visa: "Visa", mastercard: "Mastercard", amex: "American Express", discover: "Discover" };
  return names[(brand || "").toLowerCase()] || (brand ? brand[0].toUpperCase() + brand.slice(1) : "Card");
}

async function show() {
  let order;
  let event = null;
  try {
    order = await getJSON(`/api/v1/orders/${page.order_id}`);
  } catch (err) {
    box.removeAttribute("aria-busy");
    box.replaceChildren(el("h1", { class: "h3", text: "Order not found" }),
      el("p", { text: err.status === 404
        ? "We could not find this order in your account."
        : "We could not load this order just now. Please reload the page in a moment." }));
    return;
  }
  try {
    event = await getJSON(`/api/v1/events/${order.event_id}`);
  } catch (err) { /* the order alone still says what was bought */ }
  const isNew = new URLSearchParams(window.location.search).has("new");
  const seats = el("ul", { class: "list-group mb-3", "data-testid": "order-seats" },
    ...order.seats.map((s) => el("li", { class: "list-group-item d-flex justify-content-between" },
      el("span", { text: s.label }), el("span", { text: money(s.price_cents, order.currency) }))));
  box.removeAttribute("aria-busy");
  box.replaceChildren(
    el("h1", { class: "h3", text: isNew ? "Thank you! Your seats are booked." : `Order ${order.id}` }),
    el("p", { class: "lead", text: `Order ${order.id} · ${order.status === "paid" ? "Paid" : "Refunded"}` }),
    event ? el("p", { class: "mb-3" }, el("strong", { text: event.name }), el("br"),
      `${event.venue} · ${formatDate(event.starts_at, event.timezone)}`) : null,
    el("h2", { class: "h5", text: "Seats" }),
    seats,
    el("p", { class: "d-flex justify-content-between fs-5" }, el("span", { text: "Total" }),
      el("strong", { "data-testid": "order-total", text: money(order.amount_cents, order.currency) })),
    el("p", { "data-testid": "order-card", text: `Paid with ${brandName(order.payment && order.payment.brand)} ending in ${order.payment ? order.payment.last4 : "····"}` }),
    order.payment && order.payment.reference
      ? el("p", { class: "small text-body-secondary", text: `Payment reference ${order.payment.reference}` }) : null,
  );
  if (isNew) document.title = `Order ${order.id} confirmed · Boxoffice`;
}

show();
