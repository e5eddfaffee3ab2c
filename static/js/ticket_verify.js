// Offline checks of ticket codes (the format is in docs/TICKET_CODES.md):
// BX1.<kid>.<base64url(ticket id u32 | event id u32 | 10-byte secret | Ed25519 signature)>,
// the signature over "BX1.<kid>." and the 18 payload bytes. WebCrypto's Ed25519
// where the browser has it, else @noble/ed25519.
import * as ed from "@noble/ed25519";

const PAYLOAD = 18;
const SIGNATURE = 64;

function fromB64url(text) {
  if (!/^[A-Za-z0-9_-]+$/.test(text)) throw new Error("not base64url");
  const b64 = text.replace(/-/g, "+").replace(/_/g, "/") + "=".repeat((4 - (text.length % 4)) % 4);
  return Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
}

async function verifySignature(publicKey, signature, message) {
  try {
    const key = await crypto.subtle.importKey("raw", publicKey, { name: "Ed25519" }, false, ["verify"]);
    return await crypto.subtle.verify({ name: "Ed25519" }, key, signature, message);
  } catch (err) {
    return ed.verifyAsync(signature, message, publicKey);
  }
}

// {ticketId, eventId} of a genuine code, or null (malformed, unknown key, bad signature).
export async function verifyCode(code, keys) {
  const parts = (code || "").trim().split(".");
  if (parts.length !== 3 || parts[0] !== "BX1") return null;
  const key = keys.find((k) => k.kid === parts[1]);
  if (!key) return null;
  let body;
  try {
    body = fromB64url(parts[2]);
  } catch (err) {
    return null;
  }
  if (body.length !== PAYLOAD + SIGNATURE) return null;
  const head = new TextEncoder().encode(`BX1.${parts[1]}.`);
  const message = new Uint8Array(head.length + PAYLOAD);
  message.set(head);
  message.set(body.subarray(0, PAYLOAD), head.length);
  const ok = await verifySignature(fromB64url(key.public_key), body.subarray(PAYLOAD), message);
  if (!ok) return null;
  const view = new DataView(body.buffer, body.byteOffset, PAYLOAD);
  return { ticketId: view.getUint32(0), eventId: view.getUint32(4) };
}
