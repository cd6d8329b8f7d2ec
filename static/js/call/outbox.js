// Chat messages not yet acknowledged (pure: no DOM, unit-tested with `node --test`).
//
// Every message typed goes here first, with its client_id, and leaves on its `chat_ack`. One message is in
// flight at a time (`take`, then its ack): the order typed is the order stored, and a long queue cannot
// trip the server's chat rate limit. While the socket is down the messages wait; after a (re)join the one
// in flight is sent again (`retry`), then the rest. Sending one twice is safe: the server stores one message
// per (sender, client_id) and acknowledges the stored one again (chat/services.py chat_post). A storage
// (sessionStorage) keeps the queue over a reload.

export const OUTBOX_LIMIT = 500; // messages kept at most (the oldest are kept: order matters more than the tail)

export class Outbox {
  /** `storage`: an object with getItem/setItem/removeItem (sessionStorage) or null; `key`: its item. */
  constructor({ storage = null, key = "outbox", limit = OUTBOX_LIMIT } = {}) {
    this.storage = storage;
    this.key = key;
    this.limit = limit;
    this.items = [];
    this.inFlight = null; // client_id sent and not yet acknowledged
    this.load();
  }

  load() {
    let saved = null;
    try { saved = JSON.parse(this.storage?.getItem(this.key) || "null"); } catch { saved = null; }
    this.items = Array.isArray(saved) ? saved.filter((m) => m && typeof m.client_id === "string" && typeof m.text === "string") : [];
  }

  save() {
    if (!this.storage) return;
    try {
      if (this.items.length) this.storage.setItem(this.key, JSON.stringify(this.items));
      else this.storage.removeItem(this.key);
    } catch { /* private mode or full: the in-memory queue still works */ }
  }

  /** Queue a message ({client_id, text, to?, created_at?}). Returns false when the queue is full. */
  add(message) {
    if (this.items.length >= this.limit) return false;
    if (this.has(message.client_id)) return true;
    this.items.push({ ...message });
    this.save();
    return true;
  }

  /** The server has it (chat_ack) or refused it for good: it leaves the queue. Returns whether it was queued. */
  remove(clientId) {
    const before = this.items.length;
    this.items = this.items.filter((m) => m.client_id !== clientId);
    if (this.items.length === before) return false;
    this.save();
    return true;
  }

  has(clientId) {
    return this.items.some((m) => m.client_id === clientId);
  }

  /** The queued messages, oldest first. */
  pending() {
    return this.items.map((m) => ({ ...m }));
  }

  get size() {
    return this.items.length;
  }

  /** The next message to send (its `chat_send` frame), or null while one is in flight or none waits. */
  take() {
    if (this.inFlight !== null || !this.items.length) return null;
    this.inFlight = this.items[0].client_id;
    return chatFrame(this.items[0]);
  }

  /** Its chat_ack came (or the server refused it for good): it leaves, and the next may go. */
  ack(clientId) {
    if (this.inFlight === clientId) this.inFlight = null;
    return this.remove(clientId);
  }

  /** The message in flight will not be answered (socket closed, rate limited): `take` gives it again. */
  retry() {
    this.inFlight = null;
  }

  clear() {
    this.items = [];
    this.inFlight = null;
    this.save();
  }
}

/** The `chat_send` frame of a queued message; its ref lets an error frame name the message. */
export function chatFrame(m) {
  const frame = { type: "chat_send", text: m.text, client_id: m.client_id, ref: `chat:${m.client_id}` };
  if (m.to) frame.to = m.to;
  return frame;
}

// Errors after which resending cannot help (chat/services.py): the message is dropped and shown as not sent.
export const PERMANENT_CHAT_ERRORS = new Set(["empty_message", "message_too_long", "invalid_client_id", "recipient_not_found", "invalid_frame"]);
