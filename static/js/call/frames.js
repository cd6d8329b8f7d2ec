// What the page does with each server frame (docs/protocol.md §1): the dispatch table socket.js
// routes through (dispatch.js). A frame type missing here is ignored.

import { BREAKOUT_FRAMES, onBreakoutSnapshot } from "./breakouts.js";
import { toast } from "./dom.js";
import { e2eeOnKey, e2eeOnPublicKey } from "./e2ee.js";
import { addChat, onChatAck, onChatSynced } from "./chat.js";
import { forgetParticipantMedia, onForwardedTracks, onMediaReconnect, onPeerState, queueSubscribeOffer } from "./media.js";
import { showReaction } from "./panels.js";
import { renderLobby } from "./people.js";
import { onRecordingState } from "./recording.js";
import {
  finish, onErrorFrame, onMuteRequest, onRoomUpdated, onSnapshot, removeParticipant, showWaiting, upsertParticipant,
} from "./session.js";
import { send } from "./socket.js";
import { state } from "./state.js";
import { setActiveSpeaker } from "./tiles.js";

export const FRAMES = {
  ping: () => send({ type: "pong" }),
  pong: () => {},
  lobby_waiting: () => showWaiting(),
  lobby_admitted: () => toast("You were admitted."),
  room_snapshot: (f) => { onSnapshot(f); onBreakoutSnapshot(f); },
  participant_joined: (f) => upsertParticipant(f.participant),
  participant_updated: (f) => upsertParticipant(f.participant),
  participant_left: (f) => { removeParticipant(f.participantId); forgetParticipantMedia(f.participantId); },
  room_updated: (f) => onRoomUpdated(f.settings),
  lobby_list: (f) => { state.lobby = new Map(f.lobby.map((p) => [p.participantId, p])); renderLobby(); },
  lobby_request: (f) => {
    state.lobby.set(f.participant.participantId, f.participant);
    renderLobby();
    toast(`${f.participant.display_name} is waiting to join.`);
  },
  lobby_resolved: (f) => { state.lobby.delete(f.participantId); renderLobby(); },
  lobby_denied: () => finish("The host did not let you in.", "denied"),
  removed: () => finish("You were removed from the meeting.", "removed"),
  room_ended: () => finish("The host ended the meeting for everyone.", "ended"),
  chat_message: (f) => addChat(f.message),
  chat_ack: onChatAck,
  chat_synced: onChatSynced,
  offer: queueSubscribeOffer,
  active_speaker: setActiveSpeaker,
  forwarded_tracks: onForwardedTracks,
  publication: () => {
    // Nothing to do: with nothing to receive yet the server replies to `subscribe` with `sdp: null`
    // and pushes the first real `offer` itself when a track appears (docs/protocol.md §1).
  },
  media_state: onPeerState,
  media_reconnect: onMediaReconnect,
  mute_request: onMuteRequest,
  reaction: showReaction,
  e2ee_public_key: (f) => e2eeOnPublicKey(f).catch((err) => console.error("e2ee public key", err)),
  e2ee_key: (f) => e2eeOnKey(f).catch((err) => console.error("e2ee key", err)),
  recording_state: (f) => onRecordingState(f),
  error: onErrorFrame,
  ...BREAKOUT_FRAMES,
};
