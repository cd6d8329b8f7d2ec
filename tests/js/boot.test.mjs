import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import vm from "node:vm";

// static/js/boot.js is a classic script (it must run before the modules it guards): loaded here in a vm context.
const SOURCE = readFileSync(new URL("../../static/js/boot.js", import.meta.url), "utf8");

function asModule() {
  const module = { exports: {} };
  vm.runInNewContext(SOURCE, { module, globalThis: {} });
  return module.exports;
}

function asPage({ online = true, stored = {} } = {}) {
  const listeners = {};
  const timers = [];
  const store = { ...stored };
  const joinError = { textContent: "", appended: [], append(...parts) { this.appended.push(...parts); } };
  const win = {
    reloads: 0,
    listeners,
    timers,
    store,
    joinError,
    addEventListener: (type, fn) => { (listeners[type] ||= []).push(fn); },
    setTimeout: (fn, ms) => timers.push({ fn, ms }),
    navigator: { onLine: online },
    location: { reload: () => { win.reloads += 1; } },
    sessionStorage: {
      getItem: (k) => (k in store ? store[k] : null),
      setItem: (k, v) => { store[k] = String(v); },
      removeItem: (k) => { delete store[k]; },
    },
    document: {
      getElementById: (id) => (id === "join-error" ? joinError : null),
      createElement: () => ({ addEventListener() {} }),
    },
  };
  vm.runInNewContext(SOURCE, { window: win, JSON, Date });
  win.fail = () => listeners.error.forEach((fn) => fn({ target: { tagName: "SCRIPT", type: "module" } }));
  return win;
}

test("reloads after a short, growing pause, then stops and asks the user", () => {
  const { bootRetry, RETRY_DELAYS_MS } = asModule();
  let record = null;
  const delays = [];
  for (let i = 0; i < RETRY_DELAYS_MS.length; i += 1) {
    const d = bootRetry(record, 1000 + i);
    assert.equal(d.reload, true);
    delays.push(d.delay);
    record = d.record;
  }
  assert.deepEqual(delays, [500, 2000, 5000]);
  assert.equal(bootRetry(record, 2000).reload, false);
});

test("failures older than the window start the count again", () => {
  const { bootRetry, RETRY_WINDOW_MS } = asModule();
  const old = { count: 3, first: 0 };
  assert.equal(bootRetry(old, RETRY_WINDOW_MS - 1).reload, false);
  const again = bootRetry(old, RETRY_WINDOW_MS + 1);
  assert.deepEqual([again.reload, again.delay, again.record.count], [true, 500, 1]);
  assert.equal(bootRetry({ garbage: true }, 5).record.count, 1);
});

test("a failed module graph reloads the page and says why; other errors do nothing", () => {
  const page = asPage();
  page.listeners.error[0]({ target: { tagName: "IMG" } });
  page.listeners.error[0]({ target: { tagName: "SCRIPT", type: "" } });
  assert.equal(page.timers.length, 0);
  page.fail();
  page.fail(); // one failure handled once
  assert.equal(page.timers.length, 1);
  assert.match(page.joinError.textContent, /Reloading/);
  page.timers[0].fn();
  assert.equal(page.reloads, 1);
  assert.equal(JSON.parse(page.store["conference.bootRetries"]).count, 1);
});

test("offline, it reloads when the browser is back online", () => {
  const page = asPage({ online: false });
  page.fail();
  assert.equal(page.timers.length, 0);
  page.listeners.online[0]();
  assert.equal(page.reloads, 1);
});

test("after the last retry the page offers a Reload button; a page that loads forgets the count", () => {
  const page = asPage({ stored: { "conference.bootRetries": JSON.stringify({ count: 3, first: Date.now() }) } });
  page.fail();
  assert.equal(page.timers.length, 0);
  assert.match(page.joinError.textContent, /could not load/);
  assert.equal(page.joinError.appended.length, 2);
  const fine = asPage({ stored: { "conference.bootRetries": "{}" } });
  fine.conferenceBoot.loaded();
  assert.deepEqual(fine.store, {});
});
