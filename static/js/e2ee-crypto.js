// End-to-end encryption primitives (docs/security.md): pure WebCrypto functions, no DOM, no state.
//
// Used by the encoded-transform worker (e2ee-worker.js) for media frames and by
// call.js for the key exchange; importable on its own (the browser tests do).
//
// Encrypted frame layout ("SFrame-lite", like Jitsi's):
//
//   | clear header (N bytes) | AES-GCM(ciphertext of the rest + 16-byte tag) | IV (12) | key id (4, big endian) | N (1) |
//
// The clear header is what the SFU and the receiving RTP depacketizer must read:
// VP8 keyframe 10 bytes (frame tag, start code, size), VP8 delta 3 (frame tag),
// Opus 1 (TOC byte). It is authenticated as additional data, so it cannot be
// altered either.

export const IV_BYTES = 12;
export const TAG_BYTES = 16;
export const TRAILER_BYTES = IV_BYTES + 4 + 1;
const WRAP_INFO = new TextEncoder().encode("conference e2ee v1 key wrap");

/** How many leading bytes of a frame stay readable by the server. */
export function clearBytes(kind, frameType, length) {
  const n = kind === "video" ? (frameType === "key" ? 10 : 3) : 1;
  return Math.min(n, length);
}

/** A fresh 256-bit media key: its raw bytes and a random 32-bit key id (never 0). */
export function newMediaKey(avoidId = 0) {
  const raw = crypto.getRandomValues(new Uint8Array(32));
  let id = 0;
  while (id === 0 || id === avoidId) id = crypto.getRandomValues(new Uint32Array(1))[0];
  return { id, raw };
}

export function importMediaKey(raw) {
  return crypto.subtle.importKey("raw", raw, { name: "AES-GCM" }, false, ["encrypt", "decrypt"]);
}

/** Encrypt one encoded frame (Uint8Array) with ``key`` (id ``keyId``), ``clear`` leading bytes left readable. */
export async function encryptFrame(key, keyId, data, clear) {
  const header = data.subarray(0, clear);
  const iv = crypto.getRandomValues(new Uint8Array(IV_BYTES));
  const sealed = new Uint8Array(
    await crypto.subtle.encrypt({ name: "AES-GCM", iv, additionalData: header }, key, data.subarray(clear)),
  );
  const out = new Uint8Array(clear + sealed.length + TRAILER_BYTES);
  out.set(header, 0);
  out.set(sealed, clear);
  const trailer = clear + sealed.length;
  out.set(iv, trailer);
  new DataView(out.buffer).setUint32(trailer + IV_BYTES, keyId);
  out[out.length - 1] = clear;
  return out;
}

/** The key id of an encrypted frame, or null if it cannot be one. */
export function frameKeyId(data) {
  if (data.length < TRAILER_BYTES + TAG_BYTES) return null;
  const clear = data[data.length - 1];
  if (clear + TRAILER_BYTES + TAG_BYTES > data.length) return null;
  return new DataView(data.buffer, data.byteOffset, data.byteLength).getUint32(data.length - 5);
}

/** Decrypt a frame made by encryptFrame; throws (OperationError) if ``key`` is not the frame's key or it was altered. */
export async function decryptFrame(key, data) {
  if (frameKeyId(data) === null) throw new Error("not an encrypted frame");
  const clear = data[data.length - 1];
  const trailer = data.length - TRAILER_BYTES;
  const header = data.subarray(0, clear);
  const iv = data.subarray(trailer, trailer + IV_BYTES);
  const plain = new Uint8Array(
    await crypto.subtle.decrypt({ name: "AES-GCM", iv, additionalData: header }, key, data.subarray(clear, trailer)),
  );
  const out = new Uint8Array(clear + plain.length);
  out.set(header, 0);
  out.set(plain, clear);
  return out;
}

// --- key exchange: ECDH P-256 identity keys, media keys wrapped with AES-GCM ---------------

/** This page's ECDH key pair (private key not extractable) and its raw public key. */
export async function newIdentity() {
  const keyPair = await crypto.subtle.generateKey({ name: "ECDH", namedCurve: "P-256" }, false, ["deriveBits"]);
  const publicRaw = new Uint8Array(await crypto.subtle.exportKey("raw", keyPair.publicKey));
  return { keyPair, publicRaw };
}

/** The AES-GCM key shared with a peer: HKDF-SHA-256 over ECDH(mine, theirs), salted with the room ID. */
export async function sharedWrapKey(privateKey, peerPublicRaw, roomId) {
  const peer = await crypto.subtle.importKey("raw", peerPublicRaw, { name: "ECDH", namedCurve: "P-256" }, false, []);
  const secret = await crypto.subtle.deriveBits({ name: "ECDH", public: peer }, privateKey, 256);
  const hkdf = await crypto.subtle.importKey("raw", secret, "HKDF", false, ["deriveKey"]);
  return crypto.subtle.deriveKey(
    { name: "HKDF", hash: "SHA-256", salt: new TextEncoder().encode(roomId), info: WRAP_INFO },
    hkdf, { name: "AES-GCM", length: 256 }, false, ["encrypt", "decrypt"],
  );
}

function wrapAad(from, to, keyId) {
  return new TextEncoder().encode(`${from}>${to}#${keyId}`);
}

/** Wrap a raw media key for one recipient; the sender, recipient and key id are bound as additional data. */
export async function wrapMediaKey(wrapKey, raw, { from, to, keyId }) {
  const iv = crypto.getRandomValues(new Uint8Array(IV_BYTES));
  const wrapped = new Uint8Array(
    await crypto.subtle.encrypt({ name: "AES-GCM", iv, additionalData: wrapAad(from, to, keyId) }, wrapKey, raw),
  );
  return { wrapped, iv };
}

export async function unwrapMediaKey(wrapKey, wrapped, iv, { from, to, keyId }) {
  return new Uint8Array(
    await crypto.subtle.decrypt({ name: "AES-GCM", iv, additionalData: wrapAad(from, to, keyId) }, wrapKey, wrapped),
  );
}

export function toBase64(bytes) {
  let s = "";
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s);
}

export function fromBase64(text) {
  return Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
}
