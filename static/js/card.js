// Card fields: reading, formatting and checking them before anything is sent.
// The server checks the same things again (Luhn, expiry, CVC); this is for quick, clear feedback.

export function digits(value) {
  return (value || "").replace(/\D/g, "");
}

export function luhnValid(number) {
  if (!/^\d{12,19}$/.test(number)) return false;
  let sum = 0;
  let double = false;
  for (let i = number.length - 1; i >= 0; i -= 1) {
    let d = Number(number[i]);
    if (double) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
    double = !double;
  }
  return sum % 10 === 0;
}

export function isAmex(number) {
  return /^3[47]/.test(number);
}

// "4242424242424242" -> "4242 4242 4242 4242" (American Express: 4-6-5).
export function groupNumber(value) {
  const d = digits(value).slice(0, 19);
  if (isAmex(d)) return [d.slice(0, 4), d.slice(4, 10), d.slice(10, 15)].filter(Boolean).join(" ");
  return d.replace(/(\d{4})(?=\d)/g, "$1 ");
}

// "12/30", "12 / 2030", "1230" -> {month: 12, year: 2030}, or null.
export function parseExpiry(value) {
  const m = (value || "").trim().match(/^(\d{1,2})\s*\/?\s*(\d{2}|\d{4})$/);
  if (!m) return null;
  const month = Number(m[1]);
  let year = Number(m[2]);
  if (year < 100) year += 2000;
  if (month < 1 || month > 12) return null;
  return { month, year };
}

// {field: message} for every problem; empty when the card can be sent.
export function checkCard({ name, number, exp, cvc }, now = new Date()) {
  const problems = {};
  if (!name.trim()) problems.name = "Enter the name shown on the card.";
  const n = digits(number);
  if (!n) problems.number = "Enter the card number.";
  else if (!luhnValid(n)) problems.number = "This card number is not valid. Check it for typos.";
  const expiry = parseExpiry(exp);
  if (!exp.trim()) problems.exp = "Enter the expiry date.";
  else if (!expiry) problems.exp = "Write the expiry date as MM/YY.";
  else if (expiry.year < now.getFullYear()
      || (expiry.year === now.getFullYear() && expiry.month < now.getMonth() + 1)) {
    problems.exp = "This card has expired.";
  }
  const c = digits(cvc);
  const cvcLength = isAmex(n) ? 4 : 3;
  if (!cvc.trim()) problems.cvc = "Enter the security code.";
  else if (c !== cvc.trim() || c.length !== cvcLength) problems.cvc = `Enter the ${cvcLength}-digit code from the card.`;
  return problems;
}

export function cardPayload({ name, number, exp, cvc }) {
  const expiry = parseExpiry(exp);
  return {
    number: digits(number),
    exp_month: expiry.month,
    exp_year: expiry.year,
    cvc: digits(cvc),
    name: name.trim(),
  };
}
