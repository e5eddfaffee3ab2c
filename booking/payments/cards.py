"""Card checks that need no processor: Luhn, expiry, CVC, brand.

Digits are the ASCII digits 0-9 only: str.isdigit() also accepts other
scripts' digits ("٤٢٤٢") and superscripts ("²"), which no card network issues
(and int() refuses some of them).
"""
import re
from datetime import datetime, timezone

_ASCII_DIGITS = re.compile(r"[0-9]+")


def ascii_digits(text):
    """True if text is one or more of the ASCII digits 0-9 and nothing else."""
    return isinstance(text, str) and _ASCII_DIGITS.fullmatch(text) is not None


def digits_only(number):
    return "".join(ch for ch in str(number) if ch not in " -")


def luhn_valid(number):
    if not ascii_digits(number) or not 12 <= len(number) <= 19:
        return False
    total = 0
    for i, ch in enumerate(reversed(number)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def brand(number):
    """The card network of a number ("card" when unknown); any string is safe to pass."""
    if not ascii_digits(number):
        return "card"
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
    return ascii_digits(cvc) and len(cvc) == (4 if card_brand == "amex" else 3)
