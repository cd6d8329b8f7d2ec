// Jittered exponential backoff (pure: no DOM, unit-tested with `node --test`).
//
// Attempt n waits min(cap, base * 2^n), spread by ±jitter so that clients that lost the same server
// do not all come back in the same millisecond. From attempt `slowAfter` on (a connection that keeps failing
// for about a minute: a firewall, a browser that cannot connect) the cap is `slowCapMs`, so a page left open
// tries a few times a minute instead of every 5 s; a server that comes back says so (`media_reconnect`),
// which starts over at once.

/** The delay before attempt `attempt` (0-based) in milliseconds. `random` is injectable for tests. */
export function backoffDelay(
  attempt,
  { baseMs = 500, capMs = 5000, slowAfter = Infinity, slowCapMs = capMs, jitter = 0.25, random = Math.random } = {},
) {
  const cap = attempt >= slowAfter ? Math.max(capMs, slowCapMs) : capMs;
  const raw = Math.min(cap, baseMs * 2 ** Math.max(0, attempt));
  return Math.round(raw * (1 - jitter + random() * 2 * jitter));
}

/** A backoff schedule: `next()` gives the next delay and counts the attempt, `reset()` starts over. */
export class Backoff {
  constructor({ baseMs = 500, capMs = 5000, slowAfter = Infinity, slowCapMs = capMs, jitter = 0.25, random = Math.random } = {}) {
    this.options = { baseMs, capMs, slowAfter, slowCapMs, jitter, random };
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
