// The first media_state rides in the join frame (issue 19): what the page sends, and when it still sends the frame.
import assert from "node:assert/strict";
import { test } from "node:test";

import { mediaStateFields, mediaStateHeld, state } from "../../static/js/call/state.js";

test("the join frame's media_state is the page's mute, camera and sharing state", () => {
  Object.assign(state, { audioMuted: true, videoMuted: false, sharing: false });
  assert.deepEqual(mediaStateFields(), { audio_muted: true, video_muted: false, screen_sharing: false });
});

test("no media_state frame after the snapshot when the server already holds ours", () => {
  const fields = { audio_muted: true, video_muted: true, screen_sharing: false };
  const you = { participantId: "p1", audio_muted: true, video_muted: true, screen_sharing: false, hand_raised: false };
  assert.equal(mediaStateHeld(you, fields), true);
});

test("a server that ignored the join frame's media_state, or a toggle while joining, gets the frame", () => {
  const fields = { audio_muted: true, video_muted: true, screen_sharing: false };
  assert.equal(mediaStateHeld({ audio_muted: false, video_muted: false, screen_sharing: false }, fields), false);
  assert.equal(mediaStateHeld({ audio_muted: true, video_muted: false, screen_sharing: false }, fields), false);
  assert.equal(mediaStateHeld(undefined, fields), false);
});
