// A join's order (pure: no DOM, unit-tested with `node --test`). On the first room_snapshot the page sends its
// `subscribe` at once and holds everything else that needs its main thread or its WebRTC threads (drawing the
// call, setting up the camera connection) until that subscribe offer is answered: the offer's frame is handled
// only once the main thread is free, so drawing the call first made the answer leave ~100 ms after the offer
// had arrived (docs/benchmarks.md §4 *The subscribe offer waited for the page*). The hold is bounded, so a
// slow or failing subscribe never keeps the call hidden for long.

// At most this long after the snapshot (idle, the answer leaves 40–60 ms after it).
export const SUBSCRIBE_FIRST_MS = 250;

/** A promise that resolves (never rejects) once `promise` settles or `ms` have passed, whichever comes first. */
export function settledWithin(promise, ms, timers = globalThis) {
  return new Promise((resolve) => {
    const timer = timers.setTimeout(resolve, ms);
    const done = () => {
      timers.clearTimeout(timer);
      resolve();
    };
    Promise.resolve(promise).then(done, done);
  });
}
