// The call page's load guard: a classic script that runs before the page's ES modules (templates/rooms/call.html).
//
// A module graph that fails to load leaves the page half-alive: nothing is wired, "Join now" stays disabled.
// It happens when a request of the ~30 modules is aborted, most often by a network change while the page loads
// (Chromium aborts in-flight requests with net::ERR_NETWORK_CHANGED when an address of the machine changes, e.g.
// Wi-Fi to Ethernet, a VPN coming up, an IPv6 address turning valid). Then this reloads the page, after a short
// and growing pause, and says so; after RETRY_DELAYS_MS.length reloads within RETRY_WINDOW_MS it stops and offers
// a Reload button. static/js/call/main.js calls window.conferenceBoot.loaded() once it runs, which forgets the
// count. The decision (bootRetry) is pure and has a unit test (tests/js/boot.test.mjs).
(function (root) {
  "use strict";

  const KEY = "conference.bootRetries";
  const RETRY_DELAYS_MS = [500, 2000, 5000];
  const RETRY_WINDOW_MS = 60000;

  // What to do after the page's modules failed to load, given the earlier failures of this tab
  // ({count, first} or null) and the time: {reload: true, delay, record} to reload after `delay` ms and
  // store `record`, or {reload: false, record} when the tab has retried enough.
  function bootRetry(previous, now) {
    const fresh = !previous || !(now - previous.first < RETRY_WINDOW_MS) || !(previous.count >= 0);
    const record = fresh ? { count: 1, first: now } : { count: previous.count + 1, first: previous.first };
    if (record.count > RETRY_DELAYS_MS.length) return { reload: false, record };
    return { reload: true, delay: RETRY_DELAYS_MS[record.count - 1], record };
  }

  function readRecord(storage) {
    try {
      return JSON.parse(storage.getItem(KEY) || "null");
    } catch {
      return null;
    }
  }

  function writeRecord(storage, record) {
    try {
      if (record) storage.setItem(KEY, JSON.stringify(record));
      else storage.removeItem(KEY);
    } catch {
      // sessionStorage refused (private mode quota): the guard still reloads, without a limit across reloads
    }
  }

  function say(doc, text, withButton) {
    const where = doc.getElementById("join-error") || doc.body;
    if (!where) return;
    where.textContent = text;
    if (withButton) {
      const button = doc.createElement("button");
      button.type = "button";
      button.className = "small";
      button.textContent = "Reload";
      button.addEventListener("click", () => root.location.reload());
      where.append(" ", button);
    }
  }

  function onModuleFailure(win) {
    const storage = win.sessionStorage;
    const decision = bootRetry(readRecord(storage), Date.now());
    writeRecord(storage, decision.record);
    if (!decision.reload) {
      say(win.document, "The page could not load completely. Check your connection, then reload.", true);
      return;
    }
    say(win.document, "The page did not load completely (the network changed?). Reloading…", false);
    const reload = () => win.location.reload();
    if (win.navigator.onLine === false) win.addEventListener("online", reload, { once: true });
    else win.setTimeout(reload, decision.delay);
  }

  if (typeof module === "object" && module.exports) {
    module.exports = { bootRetry, RETRY_DELAYS_MS, RETRY_WINDOW_MS };
    return;
  }
  let failed = false;
  root.addEventListener(
    "error",
    (event) => {
      const el = event.target;
      // A module script's graph failed to fetch: the element gets an "error" event (it does not bubble: capture).
      if (failed || !el || el.tagName !== "SCRIPT" || el.type !== "module") return;
      failed = true;
      onModuleFailure(root);
    },
    true,
  );
  root.conferenceBoot = { loaded: () => writeRecord(root.sessionStorage, null) };
})(typeof window === "undefined" ? globalThis : window);
