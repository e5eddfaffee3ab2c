"""Card checks that need no processor: Luhn, expiry, CVC, brand."""
from datetime import datetime, timezone


def digits_only(number):
    return "".join(ch for ch in str(number) if ch not in " -")


def luhn_valid(number):
    if not number.isdigit() or not 12 <= len(number) <= 19:
        return False
    total = 0
    for i, ch in enumerate(reversed(number)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def brand(number):
    if number.startswith("4"):
        return "visa"
    if number[:2] in {"51", "52", "53", "54", "55"} or 2221 <= int(number[:4] or 0) <= 2720:
        return "mastercard"
    if number[:2] in {"34", "37"}:
        return "amex"
    if number.startswith("6011") or number.startswith("65"):
        return "discover"
    return "card"


def expired(exp_month, exp_year, now=None):
    """True once the card's expiry month is over."""
    now = now or datetime.now(timezone.utc)
    return (exp_year, exp_month) < (now.year, now.month)


def cvc_valid(cvc, card_brand):
    return cvc.isdigit() and len(cvc) == (4 if card_brand == "amex" else 3)
