// One effect on one source track (pure state machine; the media work is injected): the camera or
// microphone track goes in, the track to send comes out, either the source itself ("off") or the
// output of a processor. Changes are applied one at a time in order; a processor that cannot start
// leaves the effect off (and says so through onError) rather than sending nothing. Unit-tested in
// tests/js/effects.test.mjs.
//
//   off ──set(effect)──▶ starting ──started──▶ on ──set(other effect)──▶ on (same processor, update)
//    ▲                      │                   │
//    └────── failed ◀───────┘   set("off") / source gone / source replaced: processor stopped

export class EffectPipeline {
  /**
   * @param {object} options
   * @param {(source: MediaStreamTrack, effect: string) => Promise<{track: MediaStreamTrack, update?: (effect: string) => Promise<void>|void, stop: () => void}>} options.start
   * @param {(track: MediaStreamTrack|null) => void} [options.onOutput] the track to send changed
   * @param {(error: Error, effect: string) => void} [options.onError] a processor failed to start: the effect is now off
   */
  constructor({ start, onOutput = () => {}, onError = () => {} }) {
    this.startProcessor = start;
    this.onOutput = onOutput;
    this.onError = onError;
    this.source = null;
    this.effect = "off";
    this.state = "off"; // off | starting | on
    this.processor = null; // {track, update, stop} while on
    this.output = null;
    this.chain = Promise.resolve();
  }

  /** Choose the effect ("off" = the source as it is). Resolves with the track to send once applied. */
  set(effect) {
    return this.enqueue(() => this.apply(this.source, effect));
  }

  /** A new source track (camera restarted, device changed), or null (camera off). */
  setSource(track) {
    return this.enqueue(() => this.apply(track, this.effect));
  }

  /** Both at once: `effect` on source `track` (no processor is started on the previous source on the way). */
  use(track, effect) {
    return this.enqueue(() => this.apply(track, effect));
  }

  /** Stop any processor (leaving the page); the source itself is the caller's. */
  stop() {
    return this.enqueue(() => this.apply(null, this.effect));
  }

  enqueue(step) {
    const run = this.chain.then(step);
    this.chain = run.catch(() => {});
    return run;
  }

  async apply(source, effect) {
    const sourceChanged = source !== this.source;
    this.source = source;
    this.effect = effect;
    if (this.processor && (sourceChanged || effect === "off" || !source)) {
      this.processor.stop();
      this.processor = null;
      this.state = "off";
    }
    if (!source || effect === "off") return this.emit(source);
    if (this.processor) {
      await this.processor.update?.(effect);
      return this.emit(this.processor.track);
    }
    this.state = "starting";
    try {
      this.processor = await this.startProcessor(source, effect);
      this.state = "on";
      return this.emit(this.processor.track);
    } catch (error) {
      this.processor = null;
      this.state = "off";
      this.effect = "off";
      this.onError(error, effect);
      return this.emit(source);
    }
  }

  emit(track) {
    if (track !== this.output) {
      this.output = track;
      this.onOutput(track);
    }
    return track;
  }
}
