// The REST join request and the tab's session record (pure: no DOM, unit-tested with `node --test`).
//
// Reload keeps the seat (issue 16): the grant's `rejoin_token` (when the server gives one) is kept in this
// tab's session record and sent with every automatic join (after a reload, on socket reconnects); a valid
// one seats the same participant again without password or waiting room. The record is removed on
// leave/removed/ended. A server without rejoin tokens ignores the field: behaviour is as before.

/** The body of POST /api/v1/rooms/<id>/join. */
export function joinRequestBody({ displayName, password }, { audio = false, screen = false, rejoinToken = null } = {}) {
  const body = {
    display_name: displayName || "",
    password: password || "",
    stream_capabilities: { audio: !!audio, video: true, screen: !!screen },
  };
  if (typeof rejoinToken === "string" && rejoinToken) body.rejoin_token = rejoinToken;
  return body;
}

/** The session record after a grant: its rejoin token replaces the one kept (a grant without one removes it). */
export function recordWithGrant(record, grant) {
  const next = { ...(record || {}) };
  const token = grant?.rejoin_token;
  if (typeof token === "string" && token) next.rejoinToken = token;
  else delete next.rejoinToken;
  return next;
}

/** Whether a join that carried a rejoin token should be tried once more without it (the token was refused). */
export function retryWithoutToken(err, body) {
  if (!body?.rejoin_token || !err?.status) return false;
  return err.status < 500 && err.status !== 429;
}
