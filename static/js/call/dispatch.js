// Server frames → handlers (pure: no DOM). The client's counterpart of the server's
// socket_actions.ACTIONS table: one handler per frame type, looked up, never a switch.

/**
 * Settle the pending request a frame answers (`frame.ref`), if any.
 * Returns true when the frame was only that reply and needs no handler (an error, answer or offer reply).
 */
export function settleRef(refs, frame) {
  if (frame.ref === undefined || !refs.has(frame.ref)) return false;
  const pending = refs.get(frame.ref);
  refs.delete(frame.ref);
  if (frame.type === "error") {
    const error = new Error(frame.message);
    error.code = frame.code;
    if (frame.retry_after !== undefined) error.retryAfter = frame.retry_after;
    if (frame.details) error.details = frame.details;
    pending.reject(error);
  } else {
    pending.resolve(frame);
  }
  return frame.type === "error" || frame.type === "answer" || frame.type === "offer";
}

/**
 * Route one server frame: settle its request, then call `handlers[frame.type]` (frames of types this client
 * does not know are ignored: newer servers may send them). Returns the handler's name or null.
 */
export function dispatchFrame(frame, { refs, handlers }) {
  if (!frame || typeof frame.type !== "string") return null;
  if (settleRef(refs, frame)) return null;
  const handler = Object.hasOwn(handlers, frame.type) ? handlers[frame.type] : null;
  if (!handler) return null;
  handler(frame);
  return frame.type;
}
