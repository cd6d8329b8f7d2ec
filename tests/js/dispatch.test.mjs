import assert from "node:assert/strict";
import { test } from "node:test";
import { dispatchFrame, settleRef } from "../../static/js/call/dispatch.js";

function pending() {
  const out = {};
  out.promise = new Promise((resolve, reject) => { out.resolve = resolve; out.reject = reject; });
  return out;
}

test("a frame goes to the handler of its type", () => {
  const seen = [];
  const handlers = { chat_message: (f) => seen.push(f.message) };
  assert.equal(dispatchFrame({ type: "chat_message", message: "hi" }, { refs: new Map(), handlers }), "chat_message");
  assert.deepEqual(seen, ["hi"]);
});

test("unknown frame types and prototype names are ignored", () => {
  const handlers = { ping: () => assert.fail("not a ping") };
  assert.equal(dispatchFrame({ type: "something_new" }, { refs: new Map(), handlers }), null);
  assert.equal(dispatchFrame({ type: "toString" }, { refs: new Map(), handlers }), null);
  assert.equal(dispatchFrame({ nope: 1 }, { refs: new Map(), handlers }), null);
});

test("a reply settles its request; answers, offers and errors stop there", async () => {
  const refs = new Map();
  const a = pending();
  refs.set("r1", a);
  const handlers = { offer: () => assert.fail("a reply offer is not a pushed offer") };
  dispatchFrame({ type: "offer", ref: "r1", sdp: "x" }, { refs, handlers });
  assert.equal((await a.promise).sdp, "x");
  assert.equal(refs.size, 0);
});

test("an error reply rejects with its code and retry_after", async () => {
  const refs = new Map();
  const a = pending();
  refs.set("r2", a);
  assert.equal(settleRef(refs, { type: "error", ref: "r2", code: "media_unavailable", message: "wait", retry_after: 2 }), true);
  await assert.rejects(a.promise, (err) => err.code === "media_unavailable" && err.retryAfter === 2 && err.message === "wait");
});

test("other replies settle and are handled too (chat_ack)", async () => {
  const refs = new Map();
  const a = pending();
  refs.set("r3", a);
  const seen = [];
  dispatchFrame({ type: "chat_ack", ref: "r3", seq: 4 }, { refs, handlers: { chat_ack: (f) => seen.push(f.seq) } });
  assert.equal((await a.promise).seq, 4);
  assert.deepEqual(seen, [4]);
});
