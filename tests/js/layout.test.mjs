import assert from "node:assert/strict";
import { test } from "node:test";
import { featuredId, groupRemoteTracks, initials, isAutoplayRefusal, isForwarded, sortPeople, togglePinned } from "../../static/js/call/layout.js";

test("until the server says what it forwards, every video counts as forwarded", () => {
  assert.equal(isForwarded(null, "p1", "camera"), true);
  assert.equal(isForwarded(new Set(["p1:screen"]), "p1", "camera"), false);
  assert.equal(isForwarded(new Set(["p1:camera"]), "p1", "camera"), true);
});

test("subscribe tracks are grouped per tile; pooled microphones apart; inactive lines skipped", () => {
  const info = new Map([
    ["0", { participant: "a", source: "camera", kind: "video" }],
    ["1", { participant: "a", source: "microphone", kind: "audio" }],
    ["2", { participant: "b", source: "screen", kind: "video" }],
    ["3", { participant: "c", source: "camera", kind: "video" }],
  ]);
  const t = (mid, extra = {}) => ({ mid, currentDirection: "recvonly", stopped: false, track: `track${mid}`, ...extra });
  const all = [t("0"), t("1"), t("2"), t("3", { currentDirection: "inactive" }), t("9")];
  const plain = groupRemoteTracks(all, info, false);
  assert.deepEqual([...plain.streams], [["a", ["track0", "track1"]], ["b:screen", ["track2"]]]);
  assert.equal(plain.pooled.size, 0);
  const pooled = groupRemoteTracks(all, info, true);
  assert.deepEqual([...pooled.streams], [["a", ["track0"]], ["b:screen", ["track2"]]]);
  assert.deepEqual([...pooled.pooled], [["1", "track1"]]);
});

test("speaker view features a present pin, else the active speaker, else the first other person", () => {
  const participants = new Map([["a", {}], ["b", {}]]);
  assert.equal(featuredId({ pinned: ["gone", "b"], participants, activeSpeaker: "a", meId: "me" }), "b");
  assert.equal(featuredId({ pinned: [], participants, activeSpeaker: "me", meId: "me" }), "me");
  assert.equal(featuredId({ pinned: [], participants, activeSpeaker: "gone", meId: "me" }), "a");
  assert.equal(featuredId({ pinned: [], participants: new Map(), activeSpeaker: null, meId: "me" }), "me");
});

test("pins: newest first, at most four, a second click unpins", () => {
  let pins = [];
  for (const id of ["a", "b", "c", "d", "e"]) pins = togglePinned(pins, id);
  assert.deepEqual(pins, ["e", "d", "c", "b"]);
  assert.deepEqual(togglePinned(pins, "c"), ["e", "d", "b"]);
});

test("raised hands come first, in the order raised", () => {
  const people = [{ id: 1 }, { id: 2, hand_raised: true, hand_raised_at: "2" }, { id: 3, hand_raised: true, hand_raised_at: "1" }];
  assert.deepEqual(sortPeople(people).map((p) => p.id), [3, 2, 1]);
});

test("initials", () => {
  assert.equal(initials("Ada  Lovelace King"), "AL");
  assert.equal(initials(""), "?");
});

test("only NotAllowedError asks the user to enable sound", () => {
  assert.equal(isAutoplayRefusal({ name: "NotAllowedError" }), true);
  assert.equal(isAutoplayRefusal({ name: "AbortError" }), false);
  assert.equal(isAutoplayRefusal(undefined), false);
});
