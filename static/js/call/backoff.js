// Jittered exponential backoff (pure: no DOM, unit-tested with `node --test`).
//
// Attempt n waits min(cap, base * 2^n), spread by ±jitter so that clients that lost the same server
// do not all come back in the same millisecond.

/** The delay before attempt `attempt` (0-based) in milliseconds. `random` is injectable for tests. */
export function backoffDelay(attempt, { baseMs = 500, capMs = 5000, jitter = 0.25, random = Math.random } = {}) {
  const raw = Math.min(capMs, baseMs * 2 ** Math.max(0, attempt));
  return Math.round(raw * (1 - jitter + random() * 2 * jitter));
}

/** A backoff schedule: `next()` gives the next delay and counts the attempt, `reset()` starts over. */
export class Backoff {
  constructor({ baseMs = 500, capMs = 5000, jitter = 0.25, random = Math.random } = {}) {
    this.options = { baseMs, capMs, jitter, random };
    this.attempt = 0;
  }

  next() {
    const delay = backoffDelay(this.attempt, this.options);
    this.attempt += 1;
    return delay;
  }

  reset() {
    this.attempt = 0;
  }
}
