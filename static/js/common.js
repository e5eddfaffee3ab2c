// Shared helpers of the buyer's pages: page settings, money, dates, ids, error sentences.

const configElement = document.getElementById("page-config");
export const page = configElement ? JSON.parse(configElement.textContent) : {};

// The server's clock as the page saw it when rendered: countdowns run on the
// server's time, whatever the browser's clock says.
const clockOffsetMs = page.server_now ? Date.parse(page.server_now) - Date.now() : 0;
export function serverNow() {
  return Date.now() + clockOffsetMs;
}

const moneyFormats = new Map();
export function money(cents, currency) {
  let format = moneyFormats.get(currency);
  if (!format) {
    format = new Intl.NumberFormat(undefined, { style: "currency", currency });
    moneyFormats.set(currency, format);
  }
  const digits = format.resolvedOptions().maximumFractionDigits;
  return format.format(cents / 10 ** digits);
}

export function priceRange(minCents, maxCents, currency) {
  if (minCents == null || maxCents == null) return "";
  return minCents === maxCents
    ? money(minCents, currency)
    : `${money(minCents, currency)} – ${money(maxCents, currency)}`;
}

export function formatDate(iso, timeZone) {
  const options = {
    weekday: "short", year: "numeric", month: "short", day: "numeric",
    hour: "2-digit", minute: "2-digit", timeZoneName: "short",
  };
  try {
    return new Intl.DateTimeFormat(undefined, { ...options, timeZone: timeZone || "UTC" })
      .format(new Date(iso));
  } catch (err) {
    // An unknown zone name: show UTC rather than nothing.
    return new Intl.DateTimeFormat(undefined, { ...options, timeZone: "UTC" }).format(new Date(iso));
  }
}

// Fill in every <time data-timezone> and data-price-min/max element the server rendered.
export function localizeDates(root = document) {
  for (const el of root.querySelectorAll("time[data-timezone]")) {
    el.textContent = formatDate(el.getAttribute("datetime"), el.dataset.timezone);
  }
}

export function localizePrices(root = document) {
  for (const el of root.querySelectorAll("[data-price-min]")) {
    const currency = el.dataset.currency || el.closest("[data-currency]")?.dataset.currency;
    if (!currency) continue;
    el.textContent = priceRange(Number(el.dataset.priceMin), Number(el.dataset.priceMax), currency);
  }
}

// Request ids and idempotency keys: random, from [0-9a-f-], 36 characters.
// crypto.randomUUID needs a secure context; getRandomValues works everywhere.
export function newId() {
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

// Every error the server can answer, as a sentence a buyer understands. Codes never show.
export function errorText(error) {
  const code = error && error.code;
  const details = (error && error.details) || {};
  switch (code) {
    case "busy": {
      const wait = details.retry_after_s ? ` in about ${Math.ceil(details.retry_after_s)} seconds` : " in a few seconds";
      return `The box office is very busy right now. Please try again${wait}.`;
    }
    case "rate_limited":
      return "You are going a little fast. Please wait a moment and try again.";
    case "seat_unavailable":
      return "Sorry, a seat you chose was taken a moment ago. Please choose another seat.";
    case "limit_exceeded":
      if (details.limit === "open_holds") {
        return `You already have ${details.max ?? "the most"} seat holds open. Pay for them or let them go first.`;
      }
      return `You can hold up to ${details.max ?? page.max_seats} seats in one order.`;
    case "hold_expired":
      return "Your hold has ended, so the seats were released. Please choose your seats again.";
    case "hold_not_owned":
      return "Those seats are held by someone else.";
    case "payment_declined":
      if (details.reason === "insufficient_funds") {
        return "The card was declined because of insufficient funds. Nothing was charged. Please try another card.";
      }
      if (details.reason === "authentication_failed") {
        return "Your bank could not confirm it was you. Nothing was charged. Please try again or use another card.";
      }
      return "The card was declined by its bank. Nothing was charged. Please try another card.";
    case "invalid_card":
      // Stripe's own words about the card typed into its fields (never sent to us).
      return error.message || "This card could not be read. Please check its details.";
    case "payment_error":
      return "The payment could not be processed and nothing was charged. Please try again.";
    case "unauthorized":
      return "Your session has ended. Please log in again.";
    case "forbidden":
      return "You cannot do that right now.";
    case "not_found":
      return "That is no longer available. Please reload the page.";
    case "conflict":
      return "That could not be done right now because something changed. Please reload the page.";
    case "invalid_request":
      return "Some details were not accepted. Please check them and try again.";
    default:
      return "Something went wrong on our side. Please try again.";
  }
}

// A dismissible message at the top of the page's message area.
export function showMessage(text, kind = "info", { container = "messages", replace = true } = {}) {
  const area = document.getElementById(container);
  if (!area) return null;
  if (replace) area.replaceChildren();
  const box = document.createElement("div");
  box.className = `alert alert-${kind} alert-dismissible mb-2`;
  // Errors interrupt a screen reader; other messages wait their turn (the area is polite).
  if (kind === "danger" || kind === "warning") box.setAttribute("role", "alert");
  box.textContent = text;
  const close = document.createElement("button");
  close.type = "button";
  close.className = "btn-close";
  close.setAttribute("aria-label", "Dismiss");
  close.addEventListener("click", () => box.remove());
  box.append(close);
  area.append(box);
  return box;
}

export async function getJSON(url) {
  const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
  let body = null;
  try {
    body = await response.json();
  } catch (err) {
    body = null;
  }
  if (!response.ok) {
    const error = (body && body.error) || { code: response.status === 404 ? "not_found" : "internal" };
    throw Object.assign(new Error(error.code), { error, status: response.status });
  }
  return body;
}

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value === true ? "" : value);
  }
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}
