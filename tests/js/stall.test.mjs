import assert from "node:assert/strict";
import { test } from "node:test";
import { findStalledTrack, inboundByMid, mapsNewVideo, RemapWatch, SETTLE_MS } from "../../static/js/call/stall.js";

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
  assert.equal(fresh.arriving, false); // the first sample: nothing to compare with
  assert.equal(fresh.sample(1000, 200), false); // bytes flow
  assert.equal(fresh.arriving, true);
  assert.equal(fresh.sample(1500, 200), false);
  assert.equal(fresh.arriving, false);
  assert.equal(fresh.sample(2000, 200), true);
  const idle = new PathWatch();
  idle.sample(0, null);
  assert.equal(idle.sample(5000, null), false); // nothing connected: nothing to judge
  assert.equal(idle.sample(5500, 10), false);
  assert.equal(idle.arriving, false); // connected again: not yet a sign of arrival
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

const cam = (mid, participant, source = "camera") => ({ mid, participant, pc: "camera", source, kind: "video" });

test("a video re-mapped onto a line that carried someone else is judged from the re-map: its old packets do not hide a stall", () => {
  // mid 0 carried a (500 packets); a left, b joined and got that line (spare m-line), and b's video never comes.
  const trackInfo = new Map([["0", cam("0", "b")]]);
  const participants = new Map([["b", { video_muted: false }]]);
  const over = { trackInfo, participants, forwardedVideo: new Set(["b:camera"]), packetsByMid: new Map([["0", 500]]) };
  assert.equal(findStalledTrack(base(over)), null); // the blind spot: packets > 0 from a
  const remaps = new RemapWatch();
  remaps.map([cam("0", "a")], new Map(), 10_000); // the offer that put a there
  assert.equal(remaps.map([cam("0", "b")], new Map(), 95_000), true); // a's mid forgotten (spare), now b's
  remaps.sample(new Map([["0", 500]]), new Map([["0", 80]])); // the first stats sample after it: the baseline
  assert.equal(findStalledTrack(base({ ...over, remaps, now: 95_000 + SETTLE_MS - 1 })), null); // its own settle wait
  assert.equal(findStalledTrack(base({ ...over, remaps, now: 95_000 + SETTLE_MS })), "0");
  assert.equal(findStalledTrack(base({ ...over, remaps, now: 95_000 + SETTLE_MS, packetsByMid: new Map([["0", 530]]) })), null);
});

test("only a mid that carried another video counts as re-mapped; a repeated mapping or a first one does not", () => {
  const remaps = new RemapWatch();
  const trackInfo = new Map();
  assert.equal(remaps.map([cam("0", "a"), cam("1", "b", "screen")], trackInfo, 0), false); // first mappings
  trackInfo.set("0", cam("0", "a"));
  trackInfo.set("1", cam("1", "b", "screen"));
  assert.equal(remaps.map([cam("0", "a")], trackInfo, 1), false); // forwarded_tracks repeats what it said
  assert.equal(remaps.map([{ mid: "2", participant: "c", source: "microphone", kind: "audio" }], trackInfo, 1), false);
  assert.equal(remaps.map([cam("1", "b")], trackInfo, 2), true); // b's screen line now b's camera
  assert.equal(remaps.map([cam("0", "a")], new Map(), 3), true); // a's line forgotten, then a's again (a came back)
  assert.deepEqual([...remaps.pending.keys()], ["1", "0"]);
});

test("a re-mapped tile hides its video until a frame decoded after the re-map (not the previous person's last one)", () => {
  const remaps = new RemapWatch();
  remaps.map([cam("0", "a")], new Map(), 0);
  assert.equal(remaps.hidden("0"), false);
  remaps.map([cam("0", "b")], new Map([["0", cam("0", "a")]]), 1);
  assert.equal(remaps.hidden("0"), true);
  assert.equal(remaps.waiting(), true);
  assert.equal(remaps.sample(new Map([["0", 500]]), new Map([["0", 80]])), false); // baseline: a's frames
  assert.equal(remaps.sample(new Map([["0", 510]]), new Map([["0", 80]])), false); // packets, no frame yet
  assert.equal(remaps.hidden("0"), true);
  assert.equal(remaps.sample(new Map([["0", 520]]), new Map([["0", 81]])), true); // b's first frame: show it
  assert.equal(remaps.hidden("0"), false);
  assert.equal(remaps.waiting(), false);
  assert.equal(remaps.sample(new Map([["0", 530]]), new Map([["0", 82]])), false); // said once
});

test("counters that restart after a re-map (a receive stream the browser recreated) lower the baseline", () => {
  const remaps = new RemapWatch();
  remaps.map([cam("0", "a")], new Map(), 0);
  remaps.map([cam("0", "b")], new Map(), 1);
  remaps.sample(new Map([["0", 500]]), new Map([["0", 80]]));
  assert.equal(remaps.sample(new Map([["0", 3]]), new Map([["0", 0]])), false);
  assert.deepEqual([remaps.pending.get("0").packets, remaps.pending.get("0").frames], [3, 0]);
  assert.equal(remaps.sample(new Map([["0", 9]]), new Map([["0", 1]])), true);
});

test("getStats inbound-rtp by mid: packets and frames decoded (packets where a browser reports no frames)", () => {
  const report = new Map([
    ["a", { type: "inbound-rtp", mid: "0", packetsReceived: 10, framesDecoded: 3 }],
    ["b", { type: "inbound-rtp", mid: 1, packetsReceived: 7 }],
    ["c", { type: "outbound-rtp", mid: "2", packetsSent: 9 }],
  ]);
  const [packets, frames] = inboundByMid(report);
  assert.deepEqual([...packets], [["0", 10], ["1", 7]]);
  assert.deepEqual([...frames], [["0", 3], ["1", 7]]);
});
