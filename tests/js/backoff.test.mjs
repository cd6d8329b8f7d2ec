import assert from "node:assert/strict";
import { test } from "node:test";
import { Backoff, backoffDelay } from "../../static/js/call/backoff.js";
import { MEDIA_BACKOFF } from "../../static/js/call/recovery.js";

test("the delay doubles from the base up to the cap", () => {
  const mid = () => 0.5; // no jitter
  const delays = [0, 1, 2, 3, 4, 5, 6].map((n) => backoffDelay(n, { baseMs: 500, capMs: 5000, random: mid }));
  assert.deepEqual(delays, [500, 1000, 2000, 4000, 5000, 5000, 5000]);
});

test("jitter spreads each delay by at most ±25 %", () => {
  assert.equal(backoffDelay(0, { random: () => 0 }), 375);
  assert.equal(backoffDelay(0, { random: () => 0.999999 }), 625);
  for (let i = 0; i < 200; i += 1) {
    const d = backoffDelay(10, { capMs: 5000 });
    assert.ok(d >= 3750 && d <= 6250, String(d));
  }
});

test("a schedule counts attempts and starts over on reset", () => {
  const b = new Backoff({ baseMs: 100, capMs: 1000, random: () => 0.5 });
  assert.deepEqual([b.next(), b.next(), b.next()], [100, 200, 400]);
  assert.equal(b.attempt, 3);
  b.reset();
  assert.equal(b.next(), 100);
});

test("a connection that keeps failing for about a minute is tried a few times a minute, not every 5 s", () => {
  const b = new Backoff({ ...MEDIA_BACKOFF, random: () => 0.5 });
  const delays = Array.from({ length: 22 }, () => b.next());
  const firstMinute = delays.slice(0, 16).reduce((a, d) => a + d, 0);
  assert.ok(firstMinute >= 60_000 && firstMinute <= 70_000, String(firstMinute)); // 16 tries in the first minute
  assert.deepEqual(delays.slice(16), [20000, 20000, 20000, 20000, 20000, 20000]); // then 3 a minute
  b.reset(); // media_reconnect: a node is there again
  assert.equal(b.next(), 500);
});
