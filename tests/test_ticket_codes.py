"""Ticket codes: Ed25519-signed, verifiable with the public key alone, and still valid after
the signing key is rotated (the key id in the code picks the key)."""
import pytest

from booking.ticket_codes import CodeInvalid, TicketSigner, new_seed


def test_a_code_verifies_and_names_its_ticket_and_event():
    signer = TicketSigner.from_seeds([new_seed()])
    code = signer.sign(1234, 56)
    assert code.startswith(f"BX1.{signer.keys[0].kid}.")
    assert signer.verify(code) == (1234, 56)
    assert len(code) < 130  # a small QR code (version 7 at level M)


def test_rotation_keeps_old_codes_valid_and_unknown_keys_refused():
    old, new = new_seed(), new_seed()
    before = TicketSigner.from_seeds([old])
    code = before.sign(7, 8)
    after = TicketSigner.from_seeds([new, old])
    assert after.verify(code) == (7, 8)
    assert after.sign(9, 8).split(".")[1] == after.keys[0].kid != before.keys[0].kid
    assert [k["kid"] for k in after.public_keys()] == [after.keys[0].kid, before.keys[0].kid]
    with pytest.raises(CodeInvalid):
        TicketSigner.from_seeds([new]).verify(code)


@pytest.mark.parametrize("mangle", [
    lambda c: c[:-3] + ("AAA" if not c.endswith("AAA") else "BBB"),   # signature changed
    lambda c: c.replace("BX1.", "BX2.", 1),
    lambda c: c + "A",
    lambda c: c[:20],
    lambda c: "",
    lambda c: c.split(".")[0] + "." + c.split(".")[1] + ".!!!",
    lambda c: "x" * 500,
])
def test_forged_and_malformed_codes_are_refused(mangle):
    signer = TicketSigner.from_seeds([new_seed()])
    with pytest.raises(CodeInvalid):
        signer.verify(mangle(signer.sign(1, 2)))


def test_a_payload_changed_under_a_valid_signature_is_refused():
    import base64
    signer = TicketSigner.from_seeds([new_seed()])
    prefix, kid, body = signer.sign(1, 2).split(".")
    raw = bytearray(base64.urlsafe_b64decode(body + "=="))
    raw[3] = 2  # ticket 2 instead of 1, same signature
    forged = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
    with pytest.raises(CodeInvalid):
        signer.verify(f"{prefix}.{kid}.{forged}")
