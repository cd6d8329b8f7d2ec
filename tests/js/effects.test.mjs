// The effect settings (persistence) and the effect pipeline's state machine (static/js/call/effects/).
import assert from "node:assert/strict";
import { test } from "node:test";

import { EffectPipeline } from "../../static/js/call/effects/pipeline.js";
import {
  audioProcessing, backgroundOf, DEFAULTS, loadEffects, saveEffects, STORAGE_KEY, VIDEO_EFFECTS,
} from "../../static/js/call/effects/settings.js";

function memoryStorage(initial = {}) {
  const data = { ...initial };
  return { data, getItem: (k) => (k in data ? data[k] : null), setItem: (k, v) => { data[k] = String(v); } };
}

test("settings default to no video effect and the browser's noise suppression", () => {
  assert.deepEqual(loadEffects(memoryStorage()), DEFAULTS);
  assert.deepEqual(loadEffects(null), DEFAULTS);
});

test("settings survive a save and a load; unknown or broken values fall back to the defaults", () => {
  const storage = memoryStorage();
  assert.deepEqual(saveEffects(storage, { video: "bg:forest", noise: "rnnoise" }), { video: "bg:forest", noise: "rnnoise" });
  assert.deepEqual(loadEffects(storage), { video: "bg:forest", noise: "rnnoise" });
  assert.deepEqual(loadEffects(memoryStorage({ [STORAGE_KEY]: '{"video":"bg:nope","noise":"loud"}' })), DEFAULTS);
  assert.deepEqual(loadEffects(memoryStorage({ [STORAGE_KEY]: "not json" })), DEFAULTS);
  assert.deepEqual(loadEffects(memoryStorage({ [STORAGE_KEY]: "null" })), DEFAULTS);
  assert.deepEqual(saveEffects(storage, { video: "sepia", noise: "off" }), { video: "off", noise: "off" });
});

test("storage that refuses to save is no error", () => {
  const refusing = { getItem: () => null, setItem: () => { throw new Error("QuotaExceededError"); } };
  assert.deepEqual(saveEffects(refusing, { video: "blur", noise: "off" }), { video: "blur", noise: "off" });
});

test("every background effect names a bundled image; RNNoise turns the browser's suppressor off", () => {
  for (const { value } of VIDEO_EFFECTS.filter((e) => e.value.startsWith("bg:"))) assert.ok(backgroundOf(value)?.file.endsWith(".png"));
  assert.equal(backgroundOf("blur"), null);
  assert.deepEqual(audioProcessing("browser"), { noiseSuppression: true });
  assert.deepEqual(audioProcessing("rnnoise"), { noiseSuppression: false });
  assert.deepEqual(audioProcessing("off"), { noiseSuppression: false });
});

// A fake processor factory: records starts, updates and stops; `fail` makes the next start reject.
function fakeMedia() {
  const log = [];
  const media = {
    log,
    fail: false,
    async start(source, effect) {
      log.push(`start ${source.id} ${effect}`);
      if (media.fail) throw new Error("no wasm");
      const track = { id: `${source.id}+${effect}` };
      return { track, update: (next) => log.push(`update ${next}`), stop: () => log.push(`stop ${track.id}`) };
    },
  };
  return media;
}

test("pipeline: off sends the source; an effect starts a processor and sends its track", async () => {
  const media = fakeMedia();
  const outputs = [];
  const p = new EffectPipeline({ start: media.start, onOutput: (t) => outputs.push(t?.id ?? null) });
  const cam = { id: "cam" };
  assert.equal((await p.setSource(cam)).id, "cam");
  assert.equal(p.state, "off");
  assert.equal((await p.set("blur")).id, "cam+blur");
  assert.equal(p.state, "on");
  assert.deepEqual(outputs, ["cam", "cam+blur"]);
});

test("pipeline: changing the effect updates the running processor (same track, nothing replaced)", async () => {
  const media = fakeMedia();
  const outputs = [];
  const p = new EffectPipeline({ start: media.start, onOutput: (t) => outputs.push(t.id) });
  await p.setSource({ id: "cam" });
  await p.set("blur");
  await p.set("bg:dusk");
  assert.deepEqual(media.log, ["start cam blur", "update bg:dusk"]);
  assert.deepEqual(outputs, ["cam", "cam+blur"]);
  await p.set("off");
  assert.deepEqual(media.log.at(-1), "stop cam+blur");
  assert.equal(p.output.id, "cam");
});

test("pipeline: a new camera track restarts the processor on it; no camera sends nothing", async () => {
  const media = fakeMedia();
  const p = new EffectPipeline({ start: media.start });
  await p.setSource({ id: "cam1" });
  await p.set("blur");
  assert.equal((await p.setSource({ id: "cam2" })).id, "cam2+blur");
  assert.equal(await p.setSource(null), null);
  assert.deepEqual(media.log, ["start cam1 blur", "stop cam1+blur", "start cam2 blur", "stop cam2+blur"]);
  assert.equal(p.state, "off");
  assert.equal(p.effect, "blur"); // kept for when the camera is back
});

test("pipeline: a processor that cannot start leaves the effect off and sends the source", async () => {
  const media = fakeMedia();
  media.fail = true;
  const errors = [];
  const p = new EffectPipeline({ start: media.start, onError: (err, effect) => errors.push(`${effect}: ${err.message}`) });
  await p.setSource({ id: "cam" });
  assert.equal((await p.set("blur")).id, "cam");
  assert.deepEqual(errors, ["blur: no wasm"]);
  assert.equal(p.state, "off");
  assert.equal(p.effect, "off");
});

test("pipeline: changes are applied one at a time, in order", async () => {
  const log = [];
  let release;
  const slow = new Promise((resolve) => { release = resolve; });
  const p = new EffectPipeline({
    async start(source, effect) {
      log.push(`start ${effect}`);
      if (effect === "blur") await slow;
      return { track: { id: effect }, stop: () => log.push(`stop ${effect}`) };
    },
  });
  await p.setSource({ id: "cam" });
  const first = p.set("blur");
  const second = p.set("off");
  release();
  assert.equal((await first).id, "blur");
  assert.equal((await second).id, "cam");
  assert.deepEqual(log, ["start blur", "stop blur"]);
  assert.equal(p.state, "off");
});

test("the settings and the pipeline are pure: no DOM, no imports but each other", async () => {
  const { readFileSync } = await import("node:fs");
  for (const file of ["settings.js", "pipeline.js"]) {
    const source = readFileSync(new URL(`../../static/js/call/effects/${file}`, import.meta.url), "utf8").replace(/\/\/.*$/gm, "");
    assert.doesNotMatch(source, /\b(document|window|navigator|localStorage)\s*[.?[]/, file);
    for (const m of source.matchAll(/^import .* from "([^"]+)";/gm)) assert.match(m[1], /^\.\/(settings|pipeline)\.js$/, file);
  }
});

test("pipeline: use() switches source and effect in one step (nothing starts on the old source)", async () => {
  const media = fakeMedia();
  const p = new EffectPipeline({ start: media.start });
  await p.use({ id: "old" }, "off");
  assert.equal((await p.use({ id: "new" }, "blur")).id, "new+blur");
  assert.deepEqual(media.log, ["start new blur"]);
});
