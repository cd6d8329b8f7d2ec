// A join's order: the call is drawn and the camera set up once the subscribe offer is answered, or failed, or
// after at most SUBSCRIBE_FIRST_MS (join_order.js, used by session.js and media.js).
import assert from "node:assert/strict";
import { test } from "node:test";
import { SUBSCRIBE_FIRST_MS, settledWithin } from "../../static/js/call/join_order.js";

function fakeTimers() {
  const t = { pending: new Map(), next: 1 };
  t.setTimeout = (fn, ms) => { const id = t.next++; t.pending.set(id, { fn, ms }); return id; };
  t.clearTimeout = (id) => { t.pending.delete(id); };
  t.fire = () => { for (const [id, { fn }] of [...t.pending]) { t.pending.delete(id); fn(); } };
  return t;
}

const settle = async () => { for (let i = 0; i < 10; i += 1) await Promise.resolve(); };

function deferred() {
  const d = {};
  d.promise = new Promise((resolve, reject) => { d.resolve = resolve; d.reject = reject; });
  return d;
}

function watch(promise) {
  const seen = { done: false };
  promise.then(() => { seen.done = true; });
  return seen;
}

test("goes on once the subscribe offer is answered, and forgets its timer", async () => {
  const timers = fakeTimers();
  const answer = deferred();
  const seen = watch(settledWithin(answer.promise, SUBSCRIBE_FIRST_MS, timers));
  await settle();
  assert.equal(seen.done, false, "waits for the answer");
  assert.deepEqual([...timers.pending.values()].map((t) => t.ms), [SUBSCRIBE_FIRST_MS]);
  answer.resolve();
  await settle();
  assert.equal(seen.done, true);
  assert.equal(timers.pending.size, 0);
});

test("goes on when the subscribe attempt fails (the call is shown, the failure is the recovery's)", async () => {
  const timers = fakeTimers();
  const answer = deferred();
  const seen = watch(settledWithin(answer.promise, SUBSCRIBE_FIRST_MS, timers));
  answer.reject(new Error("media_unavailable"));
  await settle();
  assert.equal(seen.done, true);
});

test("goes on after the bound when the offer is slow, and once only", async () => {
  const timers = fakeTimers();
  const answer = deferred();
  let resolved = 0;
  settledWithin(answer.promise, SUBSCRIBE_FIRST_MS, timers).then(() => { resolved += 1; });
  timers.fire();
  await settle();
  assert.equal(resolved, 1);
  answer.resolve();
  await settle();
  assert.equal(resolved, 1);
});
