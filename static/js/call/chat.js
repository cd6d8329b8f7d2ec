// Chat: the log (ordered by seq), unread count, and sending through the outbox (outbox.js): a message
// typed while the socket is down waits, shown as pending, and is sent once the call is back, exactly once
// and in order (its client_id makes a resend idempotent); it stops being pending on its chat_ack.

import { $, el, STORE_KEY, toast } from "./dom.js";
import { Outbox, PERMANENT_CHAT_ERRORS } from "./outbox.js";
import { send } from "./socket.js";
import { state } from "./state.js";

const RETRY_MS = 1000; // after a rate_limited or transient error, the message in flight goes again this much later

function tabStorage() {
  try { return window.sessionStorage; } catch { return null; }
}

export const outbox = new Outbox({ storage: tabStorage(), key: `${STORE_KEY}:outbox` });
state.outbox = outbox;

function chatItem(clientId) {
  return [...$("chat-log").children].find((c) => c.dataset.clientId === clientId) || null;
}

// Keep the log ordered by seq (history can arrive after live messages, an ack after later messages).
function place(li, seq) {
  const log = $("chat-log");
  const before = typeof seq === "number"
    ? [...log.children].find((c) => c !== li && c.dataset.seq && Number(c.dataset.seq) > seq)
    : null;
  log.insertBefore(li, before || null);
}

function markStored(li, { seq, id }) {
  li.classList.remove("pending");
  if (id) state.chatSeen.add(id);
  if (typeof seq === "number") {
    state.lastSeq = Math.max(state.lastSeq ?? 0, seq);
    li.dataset.seq = String(seq);
    place(li, seq);
  }
}

export function addChat(message, pending = false) {
  if (!message) return;
  if (message.id && state.chatSeen.has(message.id)) return;
  const mine = state.me && message.sender === state.me.participantId;
  // My own message coming back (broadcast, or history after a reconnect) before or instead of its ack.
  const shown = mine && message.client_id ? chatItem(message.client_id) : null;
  if (shown) {
    if (!pending) {
      markStored(shown, message);
      acknowledged(message.client_id);
    }
    return;
  }
  if (message.id) state.chatSeen.add(message.id);
  if (typeof message.seq === "number") state.lastSeq = Math.max(state.lastSeq ?? 0, message.seq);
  const time = message.created_at ? new Date(message.created_at) : new Date();
  const li = el("li", { class: `chat-msg${mine ? " mine" : ""}${pending ? " pending" : ""}` },
    el("div", { class: "chat-meta" },
      el("span", { class: "chat-sender", text: mine ? "You" : message.sender_name || "Someone" }),
      message.to ? el("span", { class: "chat-private", text: "(private)" }) : null,
      el("time", { dateTime: time.toISOString(), text: time.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }) }),
    ),
    el("p", { class: "chat-text", text: message.text }),
  );
  if (pending) li.title = "Sending…";
  if (typeof message.seq === "number") li.dataset.seq = String(message.seq);
  if (message.client_id) li.dataset.clientId = message.client_id;
  place(li, message.seq);
  const log = $("chat-log");
  log.scrollTop = log.scrollHeight;
  if (!mine && $("chat-panel").hidden && !pending) {
    state.unread += 1;
    $("unread").hidden = false;
    $("unread").textContent = String(state.unread);
    $("btn-chat").setAttribute("aria-label", `Chat, ${state.unread} unread`);
  }
}

function acknowledged(clientId) {
  if (outbox.ack(clientId)) pumpChat();
}

export function onChatAck(frame) {
  const li = chatItem(frame.client_id);
  if (li) { markStored(li, frame); li.removeAttribute("title"); }
  else {
    if (frame.id) state.chatSeen.add(frame.id);
    if (typeof frame.seq === "number") state.lastSeq = Math.max(state.lastSeq ?? 0, frame.seq);
  }
  acknowledged(frame.client_id);
}

export function onChatSynced(frame) {
  if (typeof frame.up_to === "number") state.lastSeq = Math.max(state.lastSeq ?? 0, frame.up_to);
}

/** An error frame answering one of our chat_send frames (ref "chat:<client_id>"). */
export function onChatError(frame) {
  const clientId = String(frame.ref).slice("chat:".length);
  if (outbox.inFlight !== clientId) return;
  if (PERMANENT_CHAT_ERRORS.has(frame.code)) {
    outbox.ack(clientId); // resending cannot help
    const li = chatItem(clientId);
    if (li) { li.classList.remove("pending"); li.classList.add("failed"); li.title = `Not sent: ${frame.message}`; }
    toast(`A message was not sent: ${frame.message}`);
    pumpChat();
    return;
  }
  outbox.retry(); // rate_limited, or the server could not store it now: the same message again shortly
  setTimeout(pumpChat, RETRY_MS);
}

/** Send the next queued message if the call is live and none is in flight. */
export function pumpChat() {
  if (!state.wsOpen || state.phase !== "call" || !state.me) return;
  const frame = outbox.take();
  if (frame && !send(frame)) outbox.retry();
}

/** (Re)joined (room_snapshot): show what still waits (after a reload too) and send it, oldest first. */
export function resumeChat() {
  outbox.retry(); // what was in flight when the socket closed may not be stored: send it again
  for (const m of outbox.pending()) {
    if (!chatItem(m.client_id)) addChat({ sender: state.me.participantId, sender_name: state.me.display_name, text: m.text, to: m.to, client_id: m.client_id, created_at: m.created_at }, true);
  }
  pumpChat();
}

/** Leaving for good: nothing is sent any more. */
export function forgetChat() {
  outbox.clear();
}

export function sendChat(text) {
  const clientId = (crypto.randomUUID ? crypto.randomUUID() : `${Date.now()}-${Math.random()}`).slice(0, 36);
  const message = { client_id: clientId, text, created_at: new Date().toISOString() };
  if (!outbox.add(message)) {
    toast("Too many messages are waiting to be sent; try again when the connection is back.");
    return;
  }
  addChat({ sender: state.me.participantId, sender_name: state.me.display_name, ...message }, true);
  pumpChat();
}
