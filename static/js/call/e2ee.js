// End-to-end encryption (rooms created with e2ee; docs/security.md)
//
// Every encoded frame is encrypted in a worker (e2ee-worker.js) with this page's
// media key before it is packetized, and decrypted with the sender's key after
// it is received; the media server forwards ciphertext. Keys: each page has an
// ECDH P-256 identity; it broadcasts the public half (`e2ee_public_key`), and
// sends its media key to each peer wrapped with the ECDH-derived key it shares
// with that peer (`e2ee_key`, relayed by the server to that peer only). When
// someone leaves, every remaining sender makes a new media key, sends it to
// the others, and switches to it: the leaver cannot decrypt what follows.

import * as e2eeCrypto from "../e2ee-crypto.js";
import { config } from "./dom.js";
import { send } from "./socket.js";
import { state } from "./state.js";

const E2EE_SWITCH_DELAY_MS = 1000; // let peers unwrap a new key before frames use it

function e2eeSupport() {
  if (!window.crypto?.subtle || !window.Worker) return null;
  if (window.RTCRtpScriptTransform) return "script";
  if (window.RTCRtpSender?.prototype?.createEncodedStreams) return "streams";
  return null;
}

export const e2ee = {
  mode: config.e2ee ? e2eeSupport() : null, // script | streams | null
  worker: null,
  identity: null, // {keyPair, publicRaw}
  sendKey: null, // {id, raw}: the key peers are given
  activeKeyId: null, // the key id the worker encrypts with
  rotations: 0,
  peers: new Map(), // participantId -> {publicKey (base64), wrapKey}
  pending: new Map(), // participantId -> e2ee_key frames that arrived before its public key
  unseated: new Map(), // participantId -> e2ee_public_key that arrived before the participant did
  received: new Map(), // key id -> {participant, raw}: keys peers gave us
  stats: {},
  ready: null,
};
state.e2ee = e2ee;

export function e2eeReady() {
  if (!e2ee.ready) {
    e2ee.ready = (async () => {
      e2ee.worker = new Worker(new URL("../e2ee-worker.js", import.meta.url), { type: "module", name: "e2ee" });
      e2ee.worker.onmessage = ({ data }) => {
        if (data.type === "sendKeyActive") e2ee.activeKeyId = data.id;
        else if (data.type === "stats") e2ee.stats = data.stats;
      };
      e2ee.identity = await e2eeCrypto.newIdentity();
      e2ee.sendKey = e2eeCrypto.newMediaKey();
      e2ee.worker.postMessage({ type: "setSendKey", id: e2ee.sendKey.id, raw: e2ee.sendKey.raw });
    })();
  }
  return e2ee.ready;
}

export async function e2eeAnnounce() {
  await e2eeReady();
  send({ type: "e2ee_public_key", public_key: e2eeCrypto.toBase64(e2ee.identity.publicRaw) });
}

export async function e2eeOnPublicKey(frame) {
  if (!config.e2ee) return;
  await e2eeReady();
  const from = frame.from;
  if (!state.participants.has(from)) {
    // Keys go only to people shown in the call: hold it until their participant_joined arrives.
    e2ee.unseated.set(from, frame);
    return;
  }
  const known = e2ee.peers.get(from);
  if (!known || known.publicKey !== frame.public_key) {
    const wrapKey = await e2eeCrypto.sharedWrapKey(e2ee.identity.keyPair.privateKey, e2eeCrypto.fromBase64(frame.public_key), config.roomId);
    e2ee.peers.set(from, { publicKey: frame.public_key, wrapKey });
  }
  // A broadcast comes from someone (re)joining: tell them who I am. A directed one is such a reply: no echo.
  if (!frame.to) send({ type: "e2ee_public_key", public_key: e2eeCrypto.toBase64(e2ee.identity.publicRaw), to: from });
  await e2eeGiveKey(from, e2ee.sendKey);
  for (const waiting of e2ee.pending.get(from) || []) await e2eeOnKey(waiting);
  e2ee.pending.delete(from);
}

async function e2eeGiveKey(participantId, key) {
  const peer = e2ee.peers.get(participantId);
  if (!peer || !state.me) return;
  const { wrapped, iv } = await e2eeCrypto.wrapMediaKey(peer.wrapKey, key.raw, { from: state.me.participantId, to: participantId, keyId: key.id });
  send({ type: "e2ee_key", to: participantId, key_id: key.id, wrapped_key: e2eeCrypto.toBase64(wrapped), iv: e2eeCrypto.toBase64(iv) });
}

export async function e2eeOnKey(frame) {
  if (!config.e2ee) return;
  await e2eeReady();
  const peer = e2ee.peers.get(frame.from);
  if (!peer) {
    if (!e2ee.pending.has(frame.from)) e2ee.pending.set(frame.from, []);
    e2ee.pending.get(frame.from).push(frame);
    return;
  }
  let raw;
  try {
    raw = await e2eeCrypto.unwrapMediaKey(peer.wrapKey, e2eeCrypto.fromBase64(frame.wrapped_key), e2eeCrypto.fromBase64(frame.iv),
      { from: frame.from, to: state.me.participantId, keyId: frame.key_id });
  } catch {
    console.warn("e2ee: a key from", frame.from, "does not unwrap; ignored");
    return;
  }
  e2ee.received.set(frame.key_id, { participant: frame.from, raw });
  e2ee.worker.postMessage({ type: "addKey", id: frame.key_id, raw, participant: frame.from });
}

export function e2eeSeated(participantId) {
  const frame = e2ee.unseated.get(participantId);
  if (!frame) return;
  e2ee.unseated.delete(participantId);
  e2eeOnPublicKey(frame).catch((err) => console.error("e2ee public key", err));
}

let rotateTimer = null;
export function e2eeForget(participantId) {
  e2ee.unseated.delete(participantId);
  e2ee.peers.delete(participantId);
  e2ee.pending.delete(participantId);
  for (const [id, entry] of e2ee.received) if (entry.participant === participantId) e2ee.received.delete(id);
  e2ee.worker?.postMessage({ type: "forgetParticipant", participant: participantId });
  clearTimeout(rotateTimer);
  rotateTimer = setTimeout(() => e2eeRotate().catch((err) => console.error("e2ee rotation", err)), 100);
}

// A new media key: given to everyone still here first, used for frames a moment later.
async function e2eeRotate() {
  await e2eeReady();
  const key = e2eeCrypto.newMediaKey(e2ee.sendKey.id);
  e2ee.sendKey = key; // peers who introduce themselves from now on get this one
  e2ee.rotations += 1;
  await Promise.all([...e2ee.peers.keys()].map((id) => e2eeGiveKey(id, key)));
  setTimeout(() => {
    if (e2ee.sendKey === key) e2ee.worker.postMessage({ type: "setSendKey", id: key.id, raw: key.raw });
  }, E2EE_SWITCH_DELAY_MS);
}

/** Keep a video transceiver on VP8 (simulcast layers are VP8's; so are the clear header sizes of encrypted frames). */
export function preferVp8(transceiver) {
  const caps = window.RTCRtpReceiver?.getCapabilities?.("video");
  if (!caps || !transceiver.setCodecPreferences) return;
  const codecs = caps.codecs.filter((c) => /^video\/(vp8|rtx)$/i.test(c.mimeType));
  if (codecs.some((c) => /vp8/i.test(c.mimeType))) transceiver.setCodecPreferences(codecs);
}

function e2eeAttach(endpoint, options) {
  if (endpoint.e2eeAttached) return;
  endpoint.e2eeAttached = true;
  if (e2ee.mode === "script") {
    endpoint.transform = new RTCRtpScriptTransform(e2ee.worker, options);
  } else {
    const { readable, writable } = endpoint.createEncodedStreams();
    e2ee.worker.postMessage({ type: "streams", readable, writable, options }, [readable, writable]);
  }
}

export function e2eeSender(transceiver, kind) {
  if (kind === "video") preferVp8(transceiver);
  e2eeAttach(transceiver.sender, { operation: "encrypt", kind });
}

export function e2eeReceiver(receiver) {
  if (!receiver.track) return;
  e2eeAttach(receiver, { operation: "decrypt", kind: receiver.track.kind });
}
