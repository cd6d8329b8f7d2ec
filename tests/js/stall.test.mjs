import assert from "node:assert/strict";
import { test } from "node:test";
import { findStalledTrack, mapsNewVideo } from "../../static/js/call/stall.js";

const base = (over = {}) => ({
  now: 100_000,
  connectionState: "connected",
  answeredAt: 50_000,
  lastResubscribe: 0,
  trackInfo: new Map([["0", { participant: "a", source: "camera", kind: "video" }]]),
  participants: new Map([["a", { video_muted: false, audio_muted: false }]]),
  forwardedVideo: new Set(["a:camera"]),
  packetsByMid: new Map(),
  ...over,
});

test("a forwarded camera without packets is a stall", () => {
  assert.equal(findStalledTrack(base()), "0");
  assert.equal(findStalledTrack(base({ packetsByMid: new Map([["0", 5]]) })), null);
});

test("no verdict while not connected, just after an answer, or soon after the last resubscribe", () => {
  assert.equal(findStalledTrack(base({ connectionState: "connecting" })), null);
  assert.equal(findStalledTrack(base({ answeredAt: 0 })), null);
  assert.equal(findStalledTrack(base({ answeredAt: 95_000 })), null);
  assert.equal(findStalledTrack(base({ lastResubscribe: 90_000 })), null);
});

test("a camera that is off or not forwarded (last-N) is not a stall", () => {
  assert.equal(findStalledTrack(base({ participants: new Map([["a", { video_muted: true }]]) })), null);
  assert.equal(findStalledTrack(base({ forwardedVideo: new Set() })), null);
});

test("an unmuted microphone without packets is never a stall: the server drops quiet ones (−60 dBov, 3 loudest)", () => {
  const trackInfo = new Map([
    ["0", { participant: "a", source: "camera", kind: "video" }],
    ["1", { participant: "a", source: "microphone", kind: "audio" }],
    ["2", { participant: "b", source: "microphone", kind: "audio" }],
  ]);
  const participants = new Map([["a", { audio_muted: false }], ["b", { audio_muted: false, video_muted: true }]]);
  assert.equal(findStalledTrack(base({ trackInfo, participants, packetsByMid: new Map([["0", 10]]) })), null);
});

test("before the server's first forwarded_tracks nothing is judged", () => {
  assert.equal(findStalledTrack(base({ forwardedVideo: null })), null);
});

test("a forwarded screen share without packets is a stall; one of someone who left is not", () => {
  const trackInfo = new Map([["4", { participant: "a", source: "screen", kind: "video" }], ["5", { participant: "gone", source: "camera", kind: "video" }]]);
  assert.equal(findStalledTrack(base({ trackInfo, forwardedVideo: new Set(["a:screen", "gone:camera"]) })), "4");
  assert.equal(findStalledTrack(base({ trackInfo: new Map([["5", trackInfo.get("5")]]), forwardedVideo: new Set(["gone:camera"]) })), null);
});

test("a path silent for 1 s while connected is checked, at most every 5 s; any byte or no connection resets it", async () => {
  const { PathWatch, PATH_SILENT_MS, PATH_CHECK_MIN_MS } = await import("../../static/js/call/stall.js");
  const watch = new PathWatch();
  assert.equal(watch.sample(0, 100), false);
  assert.equal(watch.sample(PATH_SILENT_MS - 100, 100), false);
  assert.equal(watch.sample(PATH_SILENT_MS, 100), true);
  assert.equal(watch.sample(PATH_SILENT_MS + 500, 100), false); // just checked
  assert.equal(watch.sample(PATH_CHECK_MIN_MS + PATH_SILENT_MS, 100), true);
  const fresh = new PathWatch();
  fresh.sample(0, 100);
  assert.equal(fresh.sample(1000, 200), false); // bytes flow
  assert.equal(fresh.sample(1500, 200), false);
  assert.equal(fresh.sample(2000, 200), true);
  const idle = new PathWatch();
  idle.sample(0, null);
  assert.equal(idle.sample(5000, null), false); // nothing connected: nothing to judge
  assert.equal(idle.sample(5500, 10), false);
  assert.equal(idle.sample(6000, 10), false);
  assert.equal(idle.sample(6500, 10), true);
});

test("the path is watched only while a video should arrive: not in a room of quiet microphones, cameras off or people gone", async () => {
  const { mediaExpected } = await import("../../static/js/call/stall.js");
  const trackInfo = new Map([
    ["0", { participant: "a", source: "microphone", kind: "audio" }],
    ["1", { participant: "a", source: "camera", kind: "video" }],
    ["2", { participant: "b", source: "camera", kind: "video" }],
    ["3", { participant: "b", source: "screen", kind: "video" }],
  ]);
  const participants = new Map([["a", { video_muted: false }], ["b", { video_muted: true }]]);
  const expected = (over) => mediaExpected({ trackInfo, participants, forwardedVideo: new Set(["a:camera"]), ...over });
  assert.equal(expected({}), true);
  assert.equal(expected({ forwardedVideo: null }), false); // not told yet
  assert.equal(expected({ forwardedVideo: new Set() }), false); // audio only: quiet by design
  assert.equal(expected({ forwardedVideo: new Set(["b:camera"]) }), false); // camera off
  assert.equal(expected({ forwardedVideo: new Set(["b:screen"]) }), true); // a screen share of someone whose camera is off
  assert.equal(expected({ participants: new Map() }), false); // they left (a breakout move)
  assert.equal(expected({ trackInfo: new Map() }), false);
});

test("a video mapped onto a mid the client did not know (a spare m-line) restarts the settle wait; re-maps and audio do not", () => {
  const trackInfo = new Map([["0", { mid: "0", participant: "a", source: "camera", kind: "video" }]]);
  assert.equal(mapsNewVideo(trackInfo, [{ mid: "2", participant: "b", source: "camera", kind: "video" }]), true);
  assert.equal(mapsNewVideo(trackInfo, [{ mid: "0", participant: "b", source: "camera", kind: "video" }]), false);
  assert.equal(mapsNewVideo(trackInfo, [{ mid: "3", participant: "b", source: "microphone", kind: "audio" }]), false);
  assert.equal(mapsNewVideo(trackInfo, []), false);
});
