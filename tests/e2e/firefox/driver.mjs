// Drives one headless Firefox over WebDriver BiDi (puppeteer-core) for the Python end-to-end tests.
//
// Protocol (tests/e2e/firefox_harness.py): one JSON object per line on stdin, {"id", "op", ...};
// one reply per request on stdout, {"id", "ok": true, "value"} or {"id", "ok": false, "error"};
// page console lines and errors arrive unrequested as {"event": "console", "page", "text"}.
// The Python test starts this process with `ip netns exec <ns> node driver.mjs`, so Firefox,
// which it launches, lives in the test's network namespace like the Chromium tests' browsers.
import { createInterface } from "node:readline";
import puppeteer from "puppeteer-core";

let browser = null;
const pages = new Map(); // id -> {context, page}
let nextPage = 1;

function send(message) {
  process.stdout.write(JSON.stringify(message) + "\n");
}

function page(id) {
  const entry = pages.get(id);
  if (!entry) throw new Error(`no page ${id}`);
  return entry.page;
}

// Functions arrive as source text ("() => ...", "async (a) => ..."); they run in the page with JSON arguments.
function call(source, args) {
  return `(${source})(...${JSON.stringify(args || [])})`;
}

const ops = {
  async launch({ executablePath, prefs, args, display }) {
    browser = await puppeteer.launch({
      browser: "firefox",
      executablePath,
      // On an X display (Xvfb) when one is given: headless Firefox has no screen for getDisplayMedia to capture.
      headless: !display,
      env: display ? { ...process.env, DISPLAY: display } : process.env,
      protocol: "webDriverBiDi",
      extraPrefsFirefox: prefs,
      args: args || [],
      protocolTimeout: 60_000,
    });
    return await browser.version();
  },

  async newPage({ width, height }) {
    const context = await browser.createBrowserContext();
    const p = await context.newPage();
    await p.setViewport({ width: width || 1280, height: height || 800 });
    const id = nextPage++;
    pages.set(id, { context, page: p });
    p.on("console", (msg) => send({ event: "console", page: id, text: `${msg.type()}: ${msg.text()}` }));
    p.on("pageerror", (err) => send({ event: "console", page: id, text: `pageerror: ${err.message}` }));
    p.on("dialog", (dialog) => dialog.accept().catch(() => {}));
    return id;
  },

  async setViewport({ page: id, width, height }) {
    await page(id).setViewport({ width, height });
    return null;
  },

  async goto({ page: id, url }) {
    await page(id).goto(url, { waitUntil: "load", timeout: 30_000 });
    return page(id).url();
  },

  async url({ page: id }) {
    return page(id).url();
  },

  async reload({ page: id }) {
    await page(id).reload({ waitUntil: "load", timeout: 30_000 });
    return null;
  },

  async evaluate({ page: id, source, args }) {
    const value = await page(id).evaluate(call(source, args));
    return value === undefined ? null : value;
  },

  async waitForFunction({ page: id, source, args, ms }) {
    await page(id).waitForFunction(call(source, args), { timeout: ms ?? 20_000, polling: 200 });
    return null;
  },

  async waitForSelector({ page: id, selector, ms, hidden }) {
    await page(id).waitForSelector(selector, { timeout: ms ?? 20_000, hidden: Boolean(hidden) });
    return null;
  },

  async click({ page: id, selector }) {
    await page(id).locator(selector).setTimeout(20_000).click();
    return null;
  },

  async fill({ page: id, selector, text }) {
    await page(id).locator(selector).setTimeout(20_000).fill(text);
    return null;
  },

  async screenshot({ page: id, path }) {
    await page(id).screenshot({ path });
    return null;
  },

  async closePage({ page: id }) {
    const entry = pages.get(id);
    pages.delete(id);
    if (entry) await entry.context.close();
    return null;
  },

  async close() {
    if (browser) await browser.close();
    browser = null;
    return null;
  },
};

const lines = createInterface({ input: process.stdin });
lines.on("line", async (line) => {
  let request;
  try {
    request = JSON.parse(line);
  } catch {
    send({ id: null, ok: false, error: `not JSON: ${line.slice(0, 200)}` });
    return;
  }
  const op = ops[request.op];
  if (!op) {
    send({ id: request.id, ok: false, error: `unknown op ${request.op}` });
    return;
  }
  try {
    send({ id: request.id, ok: true, value: await op(request) });
  } catch (err) {
    send({ id: request.id, ok: false, error: String(err && err.stack ? err.stack : err) });
  }
});
// stdin closed: the test process is gone; never leave a Firefox behind.
lines.on("close", async () => {
  try {
    if (browser) await browser.close();
  } finally {
    process.exit(0);
  }
});
