// The subscribe connection's mid -> track map (state.trackInfo) as offers, forwarded_tracks and participant_left
// change it (issue 19, spare m-lines): after someone leaves, no mid stays attributed to them.
import assert from "node:assert/strict";
import { test } from "node:test";
import {
  applyForwardedTracks, forgetParticipantTracks, groupRemoteTracks, isStaleForwarded,
} from "../../static/js/call/layout.js";

const track = (mid, participant, source, kind) => ({ mid, participant, pc: "camera", source, kind });
const mic = (mid, p) => track(mid, p, "microphone", "audio");
const cam = (mid, p) => track(mid, p, "camera", "video");

// What tests/e2e INBOUND_STATS_JS attributes: each mid with an inbound stream, to whom the page maps it.
const attributed = (trackInfo, mids) => mids.map((m) => trackInfo.get(m)?.participant).filter(Boolean);

// The host's page in test_call.py's removal test, spares on: the member's lines from the offer, the guest's
// mapped onto spare mids 1 and 3 by forwarded_tracks (no offer).
function hostMap() {
  const trackInfo = new Map([["0", mic("0", "member")], ["2", cam("2", "member")]]);
  applyForwardedTracks(trackInfo, { video: [cam("2", "member"), cam("3", "guest")], audio: [mic("0", "member"), mic("1", "guest")] });
  assert.deepEqual(attributed(trackInfo, ["0", "1", "2", "3"]), ["member", "guest", "member", "guest"]);
  return trackInfo;
}

test("a leave's forwarded_tracks lists the freed lines as spares: their mids are no longer the leaver's", () => {
  const trackInfo = hostMap();
  applyForwardedTracks(trackInfo, { video: [cam("2", "member")], audio: [mic("0", "member")], spare: ["1", "3", "4"] });
  assert.deepEqual(attributed(trackInfo, ["0", "1", "2", "3"]), ["member", "member"]);
  const transceivers = ["0", "1", "2", "3"].map((mid) => ({ mid, currentDirection: "recvonly", stopped: false, track: `t${mid}` }));
  assert.deepEqual([...groupRemoteTracks(transceivers, trackInfo, false).streams], [["member", ["t0", "t2"]]]);
});

test("a spare mid given to a newcomer in the same or a later frame carries the newcomer", () => {
  const trackInfo = hostMap();
  applyForwardedTracks(trackInfo, { video: [cam("2", "member")], audio: [mic("0", "member")], spare: ["1", "3"] });
  applyForwardedTracks(trackInfo, { video: [cam("2", "member"), cam("3", "newcomer")], audio: [mic("0", "member")], spare: ["1"] });
  assert.deepEqual(attributed(trackInfo, ["0", "1", "2", "3"]), ["member", "member", "newcomer"]);
});

test("participant_left forgets the leaver's mids, whatever the server says (an older one sends no spare)", () => {
  const trackInfo = hostMap();
  applyForwardedTracks(trackInfo, { video: [cam("2", "member")], audio: [mic("0", "member")] }); // no `spare`
  assert.deepEqual(attributed(trackInfo, ["1", "3"]), ["guest", "guest"]); // what the removal test saw
  forgetParticipantTracks(trackInfo, "guest", false);
  assert.deepEqual(attributed(trackInfo, ["0", "1", "2", "3"]), ["member", "member"]);
  // Someone who comes back under the same ID is mapped again by the next forwarded_tracks.
  applyForwardedTracks(trackInfo, { video: [cam("2", "member"), cam("3", "guest")], audio: [mic("0", "member"), mic("1", "guest")] });
  assert.deepEqual(attributed(trackInfo, ["1", "3"]), ["guest", "guest"]);
});

test("participant_left keeps pooled microphone lines: the server re-maps them without telling", () => {
  const trackInfo = new Map([["0", mic("0", "gone")], ["1", cam("1", "gone")], ["2", mic("2", "other")]]);
  forgetParticipantTracks(trackInfo, "gone", true);
  assert.deepEqual([...trackInfo.keys()], ["0", "2"]);
});

test("a forwarded_tracks of an older subscribe connection is stale; one without a revision (older server) is not", () => {
  assert.equal(isStaleForwarded({ revision: 4 }, 5), true);
  assert.equal(isStaleForwarded({ revision: 5 }, 5), false); // sent while offer 5 is outstanding or answered
  assert.equal(isStaleForwarded({ revision: 6 }, 5), false);
  assert.equal(isStaleForwarded({}, 5), false);
});

test("a forwarded_tracks of another named connection is stale whatever its revision (revisions restart after a rejoin)", () => {
  // A rejoin after a leave: the new connection's revisions start at 1; a late frame of the old one says 7.
  assert.equal(isStaleForwarded({ revision: 7, connection: "old" }, 1), false); // the revisions alone let it through
  assert.equal(isStaleForwarded({ revision: 7, connection: "old" }, 1, "new"), true);
  assert.equal(isStaleForwarded({ revision: 1, connection: "new" }, 1, "new"), false);
  assert.equal(isStaleForwarded({ revision: 0, connection: "new" }, 1, "new"), true); // ours, but older than our offer
  assert.equal(isStaleForwarded({ revision: 4 }, 5, "new"), true); // an unnamed frame: revisions decide
  assert.equal(isStaleForwarded({ revision: 4, connection: "x" }, 5, null), true); // unnamed connection: likewise
});
