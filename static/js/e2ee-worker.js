// The encoded-transform worker of an end-to-end encrypted call (docs/security.md).
//
// Every outgoing encoded frame is encrypted with this page's current media key,
// every incoming one decrypted with the key its trailer names (e2ee-crypto.js).
// Keys arrive from call.js by postMessage; they never leave the browser.
// Works with RTCRtpScriptTransform (the `rtctransform` event) and with the
// older createEncodedStreams() (streams transferred in a "streams" message).

import { clearBytes, decryptFrame, encryptFrame, frameKeyId, importMediaKey } from "./e2ee-crypto.js";

const KEYS_KEPT_PER_PARTICIPANT = 4; // older keys go: in-flight frames only need the last one or two

const keys = new Map(); // key id -> {participant, key}
let sendKey = null; // {id, key}
const stats = { encrypted: 0, decrypted: 0, noKey: 0, failed: 0, droppedUnkeyed: 0 };
let statsDirty = false;

async function onMessage(msg) {
  switch (msg.type) {
    case "setSendKey":
      sendKey = { id: msg.id, key: await importMediaKey(msg.raw) };
      self.postMessage({ type: "sendKeyActive", id: msg.id });
      break;
    case "addKey": {
      keys.set(msg.id, { participant: msg.participant, key: await importMediaKey(msg.raw) });
      const mine = [...keys].filter(([, v]) => v.participant === msg.participant);
      for (const [id] of mine.slice(0, Math.max(0, mine.length - KEYS_KEPT_PER_PARTICIPANT))) keys.delete(id);
      break;
    }
    case "forgetParticipant":
      for (const [id, v] of keys) if (v.participant === msg.participant) keys.delete(id);
      break;
    case "streams":
      pipe(msg.readable, msg.writable, msg.options);
      break;
    default:
      break;
  }
}

// Messages are handled strictly in order (a key set before the next one is imported).
let chain = Promise.resolve();
self.onmessage = (event) => {
  chain = chain.then(() => onMessage(event.data)).catch((err) => console.error("e2ee worker", err));
};

self.onrtctransform = (event) => {
  const transformer = event.transformer;
  pipe(transformer.readable, transformer.writable, transformer.options);
};

function pipe(readable, writable, options) {
  const { operation, kind } = options;
  const transform = operation === "encrypt" ? encrypt(kind) : decrypt();
  readable.pipeThrough(new TransformStream({ transform })).pipeTo(writable).catch(() => {});
}

function encrypt(kind) {
  return async (frame, controller) => {
    const data = new Uint8Array(frame.data);
    if (data.length === 0) { controller.enqueue(frame); return; }
    const current = sendKey;
    if (!current) { stats.droppedUnkeyed += 1; statsDirty = true; return; } // never send media in the clear
    frame.data = (await encryptFrame(current.key, current.id, data, clearBytes(kind, frame.type, data.length))).buffer;
    stats.encrypted += 1;
    controller.enqueue(frame);
  };
}

function decrypt() {
  return async (frame, controller) => {
    const data = new Uint8Array(frame.data);
    if (data.length === 0) { controller.enqueue(frame); return; }
    statsDirty = true;
    const entry = keys.get(frameKeyId(data));
    if (!entry) { stats.noKey += 1; return; } // not (yet) given this sender's key: drop, the decoder asks for a keyframe
    try {
      frame.data = (await decryptFrame(entry.key, data)).buffer;
    } catch {
      stats.failed += 1;
      return;
    }
    stats.decrypted += 1;
    controller.enqueue(frame);
  };
}

setInterval(() => {
  if (!statsDirty && !stats.encrypted) return;
  statsDirty = false;
  self.postMessage({ type: "stats", stats: { ...stats } });
}, 1000);
