// The media retry loop: backoff, retry_after, media_reconnect (start with reset), stale attempts.
import assert from "node:assert/strict";
import { test } from "node:test";
import { Backoff } from "../../static/js/call/backoff.js";
import { Recovery, recoveryMessage, retryDelay } from "../../static/js/call/recovery.js";

// Deterministic timers: run() advances the clock to the next timer.
function fakeTimers() {
  const t = { now: 0, queue: [], next: 1 };
  t.setTimeout = (fn, ms) => { const id = t.next++; t.queue.push({ id, at: t.now + ms, fn }); return id; };
  t.clearTimeout = (id) => { t.queue = t.queue.filter((x) => x.id !== id); };
  t.runNext = () => {
    t.queue.sort((a, b) => a.at - b.at);
    const item = t.queue.shift();
    if (!item) return null;
    const waited = item.at - t.now;
    t.now = item.at;
    item.fn();
    return waited;
  };
  return t;
}

const settle = async () => { for (let i = 0; i < 10; i += 1) await Promise.resolve(); };
const noJitter = () => new Backoff({ baseMs: 500, capMs: 5000, random: () => 0.5 });

function unavailable(retryAfter) {
  const e = new Error("No media server");
  e.code = "media_unavailable";
  if (retryAfter !== undefined) e.retryAfter = retryAfter;
  return e;
}

test("retry_after (seconds) lengthens a shorter backoff delay, never shortens it", () => {
  assert.equal(retryDelay(500, unavailable(2)), 2000);
  assert.equal(retryDelay(4000, unavailable(2)), 4000);
  assert.equal(retryDelay(500, unavailable()), 500);
  assert.equal(retryDelay(500, unavailable("soon")), 500);
  assert.equal(retryDelay(500, null), 500);
});

test("the status pill names an unavailable media server", () => {
  assert.equal(recoveryMessage(unavailable()), "Media server unavailable; retrying…");
  assert.equal(recoveryMessage(new Error("timeout")), "Media connection lost; reconnecting…");
});

test("failed attempts are retried with a growing delay up to the cap until one succeeds", async () => {
  const timers = fakeTimers();
  let calls = 0;
  const r = new Recovery({
    name: "camera", backoff: noJitter(), timers,
    run: async () => { calls += 1; if (calls <= 6) throw unavailable(); },
  });
  r.start();
  const waits = [];
  for (let i = 0; i < 6; i += 1) { await settle(); waits.push(timers.runNext()); }
  await settle();
  assert.deepEqual(waits, [500, 1000, 2000, 4000, 5000, 5000]);
  assert.equal(calls, 7);
  assert.equal(r.state, "connecting"); // the owner says ok() when media flows
  r.ok();
  assert.equal(r.state, "ok");
  assert.equal(r.failures, 0);
  r.fail(new Error("connection failed"));
  assert.equal(timers.queue[0].at - timers.now, 500); // the backoff starts over after a success
});

test("a server's retry_after is waited at least", async () => {
  const timers = fakeTimers();
  const r = new Recovery({ name: "subscribe", backoff: noJitter(), timers, run: async () => { throw unavailable(3); } });
  r.start();
  await settle();
  assert.equal(timers.runNext(), 3000);
});

test("media_reconnect (start with reset) retries at once with a fresh backoff", async () => {
  const timers = fakeTimers();
  let calls = 0;
  const r = new Recovery({ name: "camera", backoff: noJitter(), timers, run: async () => { calls += 1; throw unavailable(); } });
  r.start();
  for (let i = 0; i < 4; i += 1) { await settle(); timers.runNext(); }
  await settle();
  assert.equal(timers.queue[0].at - timers.now, 5000);
  r.start({ reset: true });
  assert.equal(calls, 6);
  assert.equal(timers.queue.length, 0); // the scheduled retry was cancelled
  await settle();
  assert.equal(timers.queue[0].at - timers.now, 500);
});

test("a superseded attempt's late failure or success changes nothing", async () => {
  const timers = fakeTimers();
  let rejectFirst;
  let n = 0;
  const r = new Recovery({
    name: "subscribe", backoff: noJitter(), timers,
    run: () => { n += 1; return n === 1 ? new Promise((_, reject) => { rejectFirst = reject; }) : Promise.resolve(); },
  });
  const first = r.start();
  const second = r.start();
  rejectFirst(new Error("old"));
  await settle();
  assert.equal(r.state, "connecting");
  assert.equal(timers.queue.length, 0);
  r.ok(first);
  assert.equal(r.state, "connecting");
  r.ok(second);
  assert.equal(r.state, "ok");
});

test("one failure reported twice schedules one retry", async () => {
  const timers = fakeTimers();
  const r = new Recovery({ name: "camera", backoff: noJitter(), timers, run: async () => {} });
  r.start();
  assert.equal(r.fail(new Error("failed")), 500);
  assert.equal(r.fail(new Error("failed again")), null);
  assert.equal(timers.queue.length, 1);
});

test("stop cancels the retry and ignores later reports", async () => {
  const timers = fakeTimers();
  const states = [];
  const r = new Recovery({ name: "screen", backoff: noJitter(), timers, run: async () => { throw new Error("x"); }, onState: (x) => states.push(x.state) });
  r.start();
  await settle();
  r.stop();
  assert.equal(timers.queue.length, 0);
  assert.equal(r.fail(new Error("late")), null);
  r.ok();
  assert.deepEqual(states, ["connecting", "waiting", "idle"]);
});

test("a run that throws synchronously is a failed attempt", async () => {
  const timers = fakeTimers();
  const r = new Recovery({ name: "camera", backoff: noJitter(), timers, run: () => { throw new Error("sync"); } });
  r.start();
  await settle();
  assert.equal(r.state, "waiting");
});

test("hurry: a wait after a lost connection ends when the path works again; a server's wait is kept", async () => {
  const timers = fakeTimers();
  let calls = 0;
  const lost = new Error("camera connection timeout");
  lost.code = "connection_timeout";
  const r = new Recovery({ name: "camera", backoff: noJitter(), timers, run: async () => { calls += 1; } });
  assert.equal(r.hurry(), false); // idle: nothing to hurry
  r.start();
  await settle();
  assert.equal(r.hurry(), false); // connecting: already trying
  r.fail(lost);
  assert.equal(r.state, "waiting");
  assert.equal(r.hurry(), true);
  assert.equal(calls, 2);
  assert.equal(r.state, "connecting");
  assert.equal(timers.queue.length, 0); // the scheduled retry was cancelled
  r.fail(unavailable(3));
  assert.equal(r.hurry(), false); // the server said when
  assert.equal(calls, 2);
});
