import assert from "node:assert/strict";
import { test } from "node:test";
import { chatFrame, Outbox } from "../../static/js/call/outbox.js";

function memoryStorage() {
  const data = new Map();
  return { getItem: (k) => (data.has(k) ? data.get(k) : null), setItem: (k, v) => data.set(k, String(v)), removeItem: (k) => data.delete(k), data };
}

test("messages wait in order and leave on their ack", () => {
  const box = new Outbox();
  box.add({ client_id: "a", text: "one" });
  box.add({ client_id: "b", text: "two" });
  box.add({ client_id: "c", text: "three" });
  assert.equal(box.remove("b"), true);
  assert.equal(box.remove("b"), false);
  assert.deepEqual(box.pending().map((m) => m.text), ["one", "three"]);
});

test("one message is in flight at a time, in the order typed", () => {
  const box = new Outbox();
  for (const [id, text] of [["a", "one"], ["b", "two"]]) box.add({ client_id: id, text });
  const first = box.take();
  assert.deepEqual([first.type, first.client_id, first.text, first.ref], ["chat_send", "a", "one", "chat:a"]);
  assert.equal(box.take(), null); // "b" waits for a's ack
  assert.equal(box.ack("a"), true);
  assert.equal(box.take().client_id, "b");
  box.ack("b");
  assert.equal(box.take(), null);
  assert.equal(box.size, 0);
});

test("a message whose socket closed before its ack is sent again first, and only its ack removes it", () => {
  const box = new Outbox();
  for (const id of ["a", "b"]) box.add({ client_id: id, text: id });
  box.take();
  box.retry(); // the socket closed: a may or may not be stored
  assert.equal(box.size, 2);
  assert.equal(box.take().client_id, "a"); // resent with the same client_id: stored once
  box.ack("a");
  assert.equal(box.take().client_id, "b");
});

test("a late ack of a message not in flight still removes it and keeps the one in flight", () => {
  const box = new Outbox();
  for (const id of ["a", "b"]) box.add({ client_id: id, text: id });
  box.take();
  box.retry();
  box.take(); // a again
  assert.equal(box.ack("b"), true);
  assert.equal(box.inFlight, "a");
});

test("the same client_id is queued once", () => {
  const box = new Outbox();
  box.add({ client_id: "a", text: "one" });
  box.add({ client_id: "a", text: "one" });
  assert.equal(box.size, 1);
});

test("the queue survives a reload through its storage, and the storage item goes when it is empty", () => {
  const storage = memoryStorage();
  const box = new Outbox({ storage, key: "k" });
  box.add({ client_id: "a", text: "one", to: "p1" });
  box.add({ client_id: "b", text: "two" });
  const reloaded = new Outbox({ storage, key: "k" });
  assert.deepEqual(reloaded.pending(), [{ client_id: "a", text: "one", to: "p1" }, { client_id: "b", text: "two" }]);
  reloaded.remove("a");
  reloaded.remove("b");
  assert.equal(storage.data.has("k"), false);
});

test("a damaged or foreign storage item is ignored", () => {
  const storage = memoryStorage();
  storage.setItem("k", "{not json");
  assert.equal(new Outbox({ storage, key: "k" }).size, 0);
  storage.setItem("k", JSON.stringify([{ client_id: 1, text: "x" }, { client_id: "ok", text: "fine" }, null]));
  assert.deepEqual(new Outbox({ storage, key: "k" }).pending().map((m) => m.client_id), ["ok"]);
});

test("a storage that throws (private mode, full) still leaves a working in-memory queue", () => {
  const storage = { getItem: () => { throw new Error("denied"); }, setItem: () => { throw new Error("full"); }, removeItem: () => {} };
  const box = new Outbox({ storage, key: "k" });
  box.add({ client_id: "a", text: "one" });
  assert.equal(box.size, 1);
});

test("a full queue refuses more", () => {
  const box = new Outbox({ limit: 2 });
  assert.equal(box.add({ client_id: "a", text: "1" }), true);
  assert.equal(box.add({ client_id: "b", text: "2" }), true);
  assert.equal(box.add({ client_id: "c", text: "3" }), false);
});

test("a private message keeps its recipient", () => {
  assert.deepEqual(chatFrame({ client_id: "a", text: "psst", to: "p2" }), { type: "chat_send", text: "psst", client_id: "a", ref: "chat:a", to: "p2" });
});
