// Keeping one media connection alive (pure: no DOM, unit-tested with `node --test`).
//
// A Recovery owns the retry loop of one connection (camera, screen, subscribe): `start()` runs an
// attempt now; the connection's owner reports `ok()` once media flows and `fail(err)` when an attempt
// or the connection failed; the next attempt then waits the backoff delay (0.5 s → 5 s, ±25 %; 20 s once it has
// kept failing for about a minute), or
// longer when the server said how long (`retry_after`, seconds, of a `media_unavailable` error frame).
// `start({ reset: true })` is what a `media_reconnect` does: a live node is there, so try at once
// with a fresh backoff. An attempt superseded by a newer one cannot fail the loop.

import { Backoff } from "./backoff.js";

// 0.5, 1, 2, 4, then 5 s; after 16 failed attempts (about a minute) every 20 s (±25 %).
export const MEDIA_BACKOFF = { baseMs: 500, capMs: 5000, slowAfter: 16, slowCapMs: 20000, jitter: 0.25 };

/** The wait before the next attempt: the backoff delay, but at least the server's `retry_after` (seconds). */
export function retryDelay(backoffMs, err) {
  const retryAfter = Number(err?.retryAfter);
  return Number.isFinite(retryAfter) && retryAfter > 0 ? Math.max(backoffMs, Math.round(retryAfter * 1000)) : backoffMs;
}

/** What the status pill says while a connection is being recovered. */
export function recoveryMessage(err) {
  if (err?.code === "media_unavailable") return "Media server unavailable; retrying…";
  return "Media connection lost; reconnecting…";
}

export class Recovery {
  /**
   * run(attempt): start one attempt; its promise rejecting is a failure of that attempt.
   * onState(recovery): called when `state` changes ("idle" | "connecting" | "waiting" | "ok").
   */
  constructor({ name, run, onState = () => {}, backoff = new Backoff(MEDIA_BACKOFF), timers = globalThis }) {
    this.name = name;
    this.run = run;
    this.onState = onState;
    this.backoff = backoff;
    this.timers = timers;
    this.state = "idle";
    this.attempt = 0; // the current attempt's number: reports of older attempts are ignored
    this.timer = null;
    this.lastError = null;
    this.failures = 0; // consecutive failures (for the status pill)
  }

  get active() {
    return this.state === "connecting" || this.state === "waiting";
  }

  /** Run an attempt now (cancelling a scheduled one). `reset`: forget earlier failures first. */
  start({ reset = false } = {}) {
    if (reset) { this.backoff.reset(); this.failures = 0; this.lastError = null; }
    this.timers.clearTimeout(this.timer);
    this.timer = null;
    this.attempt += 1;
    const attempt = this.attempt;
    this.setState("connecting");
    let result;
    try {
      result = Promise.resolve(this.run(attempt));
    } catch (err) {
      result = Promise.reject(err);
    }
    result.catch((err) => this.fail(err, attempt));
    return attempt;
  }

  /** Media flows on this attempt: the next failure starts the backoff from its first step. */
  ok(attempt = this.attempt) {
    if (attempt !== this.attempt || this.state === "idle") return;
    this.backoff.reset();
    this.failures = 0;
    this.lastError = null;
    this.setState("ok");
  }

  /** This attempt failed: schedule the next one. Returns the delay (ms), or null when the report is stale. */
  fail(err, attempt = this.attempt) {
    if (attempt !== this.attempt || this.state === "idle" || this.state === "waiting") return null;
    this.failures += 1;
    this.lastError = err || null;
    const delay = retryDelay(this.backoff.next(), err);
    this.setState("waiting");
    this.timer = this.timers.setTimeout(() => {
      this.timer = null;
      if (this.state === "waiting") this.start();
    }, delay);
    return delay;
  }

  /** The path works again (another connection just connected): a wait after a lost connection ends now.
   * Waits the server asked for (`retry_after`, a media error) are kept. Returns whether an attempt started. */
  hurry() {
    if (this.state !== "waiting" || !String(this.lastError?.code || "").startsWith("connection_")) return false;
    this.start();
    return true;
  }

  /** Give up on this connection (leaving, a screen share stopped): no more attempts. */
  stop() {
    this.timers.clearTimeout(this.timer);
    this.timer = null;
    this.attempt += 1;
    this.setState("idle");
  }

  setState(next) {
    if (this.state === next) return;
    this.state = next;
    this.onState(this);
  }
}
