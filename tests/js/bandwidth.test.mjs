import assert from "node:assert/strict";
import { test } from "node:test";
import { PAUSED_HINT, REDUCED_HINT, connectedStatus, parseBandwidth, tileHint } from "../../static/js/call/bandwidth.js";

const track = (participant, reason, extra = {}) => ({ mid: "1", participant, pc: "camera", source: "camera", kind: "video", reason, ...extra });

test("an older server's forwarded_tracks (no bandwidth, or an unknown state) says nothing", () => {
  assert.equal(parseBandwidth(undefined), null);
  assert.equal(parseBandwidth({ state: "splendid", tracks: [] }), null);
  assert.equal(tileHint(null, "p1", "camera"), null);
  assert.deepEqual(connectedStatus(null), { text: "Connected", kind: "good", title: "" });
});

test("a video paused for bandwidth gets the paused hint, a reduced one the reduced hint, others none", () => {
  const bw = parseBandwidth({ state: "low", estimate_bps: 90000, tracks: [track("a", "paused_bandwidth"), track("b", "reduced"), track("c", "mystery")] });
  assert.deepEqual(tileHint(bw, "a", "camera"), { kind: "paused", text: PAUSED_HINT });
  assert.deepEqual(tileHint(bw, "b", "camera"), { kind: "reduced", text: REDUCED_HINT });
  assert.equal(tileHint(bw, "c", "camera"), null); // an unknown reason from a newer server
  assert.equal(tileHint(bw, "a", "screen"), null);
  assert.equal(tileHint(bw, "d", "camera"), null);
});

test("a camera that is off never shows a bandwidth hint", () => {
  const bw = parseBandwidth({ state: "low", estimate_bps: 90000, tracks: [track("a", "paused_bandwidth")] });
  assert.equal(tileHint(bw, "a", "camera", { videoMuted: true }), null);
});

test("the status pill says when bandwidth is limited or low, with the estimate in its tooltip", () => {
  const good = connectedStatus(parseBandwidth({ state: "good", estimate_bps: 2500000, tracks: [] }));
  assert.deepEqual(good, { text: "Connected", kind: "good", title: "Estimated bandwidth: 2.5 Mbit/s" });
  const limited = connectedStatus(parseBandwidth({ state: "limited", estimate_bps: 420000, tracks: [track("b", "reduced")] }));
  assert.equal(limited.text, "Connected · limited bandwidth");
  assert.equal(limited.kind, "limited");
  assert.match(limited.title, /420 kbit\/s/);
  const low = connectedStatus(parseBandwidth({ state: "low", estimate_bps: null, tracks: [] }));
  assert.equal(low.text, "Connected · low bandwidth");
  assert.equal(low.title, "Some videos are paused to save bandwidth");
});
