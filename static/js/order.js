// The confirmation page of one order: its tickets with their QR codes, the PDF,
// a calendar file, and the confirmation e-mail sent again on request.
import { el, errorText, formatDate, getJSON, money, page } from "app/common";

const box = document.getElementById("order");

function brandName(brand) {
  const names = { visa: "Visa", mastercard: "Mastercard", amex: "American Express", discover: "Discover" };
  return names[(brand || "").toLowerCase()] || (brand ? brand[0].toUpperCase() + brand.slice(1) : "Card");
}

const ORDER_STATUS = { paid: "Paid", partially_refunded: "Partly refunded", refunded: "Refunded" };

function ticketCard(order, ticket, event) {
  const seatLine = `Section ${ticket.section} · Row ${ticket.row} · Seat ${ticket.number}`;
  let visual;
  let badge;
  if (ticket.status === "void") {
    visual = el("div", { class: "ticket-void", text: "VOID" });
    badge = el("span", { class: "badge text-bg-danger", text: "Void (refunded)" });
  } else {
    visual = el("img", {
      class: "ticket-qr", width: "240", height: "240", loading: "lazy",
      src: `/api/v1/orders/${order.id}/tickets/${ticket.id}/qr.svg`,
      alt: `QR code of the ticket for ${ticket.label}`,
    });
    badge = ticket.status === "checked_in"
      ? el("span", { class: "badge text-bg-secondary", text: `Checked in ${formatDate(ticket.checked_in_at, event && event.timezone)}` })
      : el("span", { class: "badge text-bg-success", text: "Valid" });
  }
  return el("li", { class: `list-group-item ticket ticket-${ticket.status}`, "data-testid": "ticket", "data-ticket-id": String(ticket.id) },
    el("div", { class: "d-flex justify-content-between align-items-start gap-2 mb-2" },
      el("div", {}, el("strong", { text: seatLine }), el("br"),
        el("span", { class: "text-body-secondary small", text: `${ticket.label} · ticket ${ticket.id} · ${money(ticket.price_cents, order.currency)}` })),
      badge),
    el("div", { class: "text-center" }, visual));
}

async function resend(order, button, note) {
  button.disabled = true;
  note.textContent = "Sending…";
  try {
    const response = await fetch(`/api/v1/orders/${order.id}/email`, {
      method: "POST", credentials: "same-origin", headers: { Accept: "application/json" },
    });
    const body = await response.json().catch(() => null);
    if (!response.ok) throw Object.assign(new Error("failed"), { error: body && body.error });
    note.textContent = `On its way to ${body.to}.`;
  } catch (err) {
    note.textContent = err.error ? errorText(err.error) : "The e-mail could not be sent just now.";
  } finally {
    setTimeout(() => { button.disabled = false; }, 5000);
  }
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
  const tickets = order.tickets || [];
  const note = el("span", { class: "small text-body-secondary", role: "status", "data-testid": "resend-note" });
  const resendButton = el("button", { type: "button", class: "btn btn-outline-secondary", "data-testid": "resend-email", text: "Send the e-mail again" });
  resendButton.addEventListener("click", () => resend(order, resendButton, note));
  const actions = el("div", { class: "d-flex flex-wrap gap-2 align-items-center mb-3" },
    order.status !== "refunded"
      ? el("a", { class: "btn btn-primary", href: `/api/v1/orders/${order.id}/tickets.pdf`, download: `tickets-order-${order.id}.pdf`, "data-testid": "download-pdf", text: "Download PDF" })
      : null,
    el("a", { class: "btn btn-outline-primary", href: `/api/v1/events/${order.event_id}/calendar.ics`, download: `event-${order.event_id}.ics`, "data-testid": "add-calendar", text: "Add to calendar" }),
    resendButton, note);
  box.removeAttribute("aria-busy");
  box.replaceChildren(
    el("h1", { class: "h3", text: isNew ? "Thank you! Your seats are booked." : `Order ${order.id}` }),
    el("p", { class: "lead", "data-testid": "order-status", text: `Order ${order.id} · ${ORDER_STATUS[order.status] || order.status}` }),
    event ? el("p", { class: "mb-3" }, el("strong", { text: event.name }), el("br"),
      `${event.venue} · ${formatDate(event.starts_at, event.timezone)}`) : null,
    actions,
    el("h2", { class: "h5", text: tickets.length === 1 ? "Your ticket" : `Your ${tickets.length} tickets` }),
    el("p", { class: "small text-body-secondary", text: "Show each code at the door, on this screen at full brightness or printed. One scan lets one person in." }),
    el("ul", { class: "list-group mb-3 tickets", "data-testid": "order-seats" },
      ...tickets.map((t) => ticketCard(order, t, event))),
    el("p", { class: "d-flex justify-content-between fs-5" }, el("span", { text: "Total" }),
      el("strong", { "data-testid": "order-total", text: money(order.amount_cents, order.currency) })),
    el("p", { "data-testid": "order-card", text: `Paid with ${brandName(order.payment && order.payment.brand)} ending in ${order.payment ? order.payment.last4 : "····"}` }),
    order.payment && order.payment.reference
      ? el("p", { class: "small text-body-secondary", text: `Payment reference ${order.payment.reference}` }) : null,
  );
  if (isNew) document.title = `Order ${order.id} confirmed · Boxoffice`;
}

show();
