"""Signed ticket codes: what a ticket's QR code says, and how a scanner trusts it.

A code is `BX1.<kid>.<body>`: `body` is base64url (no padding) of 18 bytes of
payload (ticket id and event id as 4-byte big-endian integers, then a 10-byte
random secret) followed by a 64-byte Ed25519 signature over `BX1.<kid>.` and
the payload. `kid` names the signing key (the first 6 bytes of the SHA-256 of
its raw public key, base64url), so that codes signed by an older key still
verify after a new key takes over: every configured key is published at
GET /api/v1/ticket-key and accepted, the first one signs new tickets.

A scanner with only the public keys can tell a forged code from a real one
offline; the database still decides whether a real ticket is valid, checked
in or void (the secret must match the ticket's stored code, so a leaked
ticket id alone is worth nothing).
"""
import base64
import hashlib
import hmac
import secrets
import struct
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (Ed25519PrivateKey,
                                                               Ed25519PublicKey)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

PREFIX = "BX1"
SECRET_BYTES = 10
_PAYLOAD = struct.Struct(">II")
PAYLOAD_BYTES = _PAYLOAD.size + SECRET_BYTES
SIGNATURE_BYTES = 64
MAX_CODE_LENGTH = 200


class CodeInvalid(Exception):
    """A code that is malformed, signed by an unknown key, or whose signature is wrong."""


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64url(text):
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError) as err:
        raise CodeInvalid("not base64url") from err


@dataclass(frozen=True)
class SigningKey:
    kid: str
    private: Ed25519PrivateKey | None
    public: Ed25519PublicKey

    @property
    def public_raw(self):
        return self.public.public_bytes(Encoding.Raw, PublicFormat.Raw)


def new_seed():
    """A new private key as text (base64url of its 32-byte seed), for TICKET_SIGNING_KEY."""
    return b64url(secrets.token_bytes(32))


def _kid(public_raw):
    return b64url(hashlib.sha256(public_raw).digest()[:6])


def load_keys(seeds):
    """SigningKeys from base64url seeds, the signing one first; raises ValueError if one is bad."""
    keys = []
    for seed in seeds:
        raw = _unb64url(seed.strip()) if seed.strip() else b""
        if len(raw) != 32:
            raise ValueError("a ticket signing key is base64url of 32 bytes")
        private = Ed25519PrivateKey.from_private_bytes(raw)
        public = private.public_key()
        keys.append(SigningKey(_kid(public.public_bytes(Encoding.Raw, PublicFormat.Raw)),
                               private, public))
    if not keys:
        raise ValueError("no ticket signing key")
    return keys


class TicketSigner:
    """Signs with the first key, verifies with any of them."""

    def __init__(self, keys):
        self.keys = list(keys)
        self.by_kid = {k.kid: k for k in self.keys}

    @classmethod
    def from_seeds(cls, seeds):
        return cls(load_keys(seeds))

    def public_keys(self):
        """[{kid, alg, public_key}] with the raw public key in base64url (what scanners need)."""
        return [{"kid": k.kid, "alg": "Ed25519", "public_key": b64url(k.public_raw)}
                for k in self.keys]

    def sign(self, ticket_id, event_id, secret=None):
        """The code for a ticket (a fresh secret unless given)."""
        secret = secret if secret is not None else secrets.token_bytes(SECRET_BYTES)
        key = self.keys[0]
        head = f"{PREFIX}.{key.kid}."
        payload = _PAYLOAD.pack(ticket_id, event_id) + secret
        signature = key.private.sign(head.encode() + payload)
        return head + b64url(payload + signature)

    def verify(self, code):
        """(ticket_id, event_id) of a genuine code; raises CodeInvalid otherwise."""
        if not isinstance(code, str) or len(code) > MAX_CODE_LENGTH:
            raise CodeInvalid("not a ticket code")
        parts = code.strip().split(".")
        if len(parts) != 3 or parts[0] != PREFIX:
            raise CodeInvalid("not a ticket code")
        key = self.by_kid.get(parts[1])
        if key is None:
            raise CodeInvalid("signed by an unknown key")
        body = _unb64url(parts[2])
        if len(body) != PAYLOAD_BYTES + SIGNATURE_BYTES or b64url(body) != parts[2]:
            raise CodeInvalid("wrong length")
        payload, signature = body[:PAYLOAD_BYTES], body[PAYLOAD_BYTES:]
        try:
            key.public.verify(signature, f"{PREFIX}.{key.kid}.".encode() + payload)
        except InvalidSignature as err:
            raise CodeInvalid("bad signature") from err
        ticket_id, event_id = _PAYLOAD.unpack(payload[:_PAYLOAD.size])
        return ticket_id, event_id


def same_code(stored, presented):
    """Constant-time comparison of a stored code and a presented one."""
    return hmac.compare_digest(stored.encode(), presented.strip().encode())
