import assert from "node:assert/strict";
import { test } from "node:test";
import { assignedRoom, canEnter, countdownText, roomsView, secondsLeft } from "../../static/js/call/breakout_logic.js";

const split = {
  status: "open",
  breakouts: [
    { breakoutId: "r1", name: "Room 1", assigned: ["a", "b"], present: ["a", "h"] },
    { breakoutId: "r2", name: "Room 2", assigned: ["c"], present: [] },
  ],
};

test("the countdown rounds up to whole seconds and stops at zero", () => {
  const now = Date.parse("2026-12-07T02:00:00Z");
  assert.equal(secondsLeft("2026-12-07T02:01:00Z", now), 60);
  assert.equal(secondsLeft("2026-12-07T02:00:00.200Z", now), 1);
  assert.equal(secondsLeft("2026-12-07T01:59:00Z", now), 0);
  assert.equal(secondsLeft(null, now), null);
  assert.equal(secondsLeft("not a time", now), null);
  assert.equal(countdownText(60), "Returning to the main room in 60 s");
  assert.equal(countdownText(0), "Returning to the main room…");
  assert.equal(countdownText(null), "");
});

test("participants enter only their own open room, moderators any", () => {
  assert.equal(assignedRoom(split, "c"), "r2");
  assert.equal(assignedRoom(split, "z"), null);
  assert.equal(canEnter(split, "r1", { meetingId: "a", moderator: false }), true);
  assert.equal(canEnter(split, "r2", { meetingId: "a", moderator: false }), false);
  assert.equal(canEnter(split, "r2", { meetingId: "h", moderator: true }), true);
  assert.equal(canEnter(split, "nope", { meetingId: "h", moderator: true }), false);
  assert.equal(canEnter({ ...split, status: "closing" }, "r1", { meetingId: "a", moderator: false }), false);
  assert.equal(canEnter(null, "r1", { meetingId: "a", moderator: true }), false);
});

test("the panel lists each room's people, who is there now, visitors, and the unassigned", () => {
  const names = new Map([["a", "Ann"], ["b", "Bob"], ["c", "Cy"], ["h", "Host"], ["d", "Di"]]);
  const view = roomsView(split, names);
  assert.deepEqual(view.rooms[0].people, [{ id: "a", name: "Ann", present: true }, { id: "b", name: "Bob", present: false }]);
  assert.deepEqual(view.rooms[0].visitors, [{ id: "h", name: "Host" }]);
  assert.deepEqual(view.unassigned.map((p) => p.id), ["h", "d"]);
  assert.deepEqual(roomsView(null, names).rooms, []);
});
