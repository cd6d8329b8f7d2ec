// Background blur and virtual backgrounds on the camera track, in the browser, before the track reaches the
// publish connection (and so before end-to-end encryption, which works on encoded frames).
//
// Segmentation: MediaPipe Selfie Segmentation (landscape model, 256x144 input), whose loader, WebAssembly and
// model ship in the npm package @mediapipe/selfie_segmentation and are served from /static/vendor/
// (`make vendor`; docs/architecture.md says why this package). The model runs on a small copy of the frame,
// at most one frame in flight; frames are composited with the latest mask. The solution runs its WebGL graph
// on this thread (it needs `document`, so no worker): without a GPU the frame rate is the segmentation rate.
//
// Frames: MediaStreamTrackProcessor -> compose on an OffscreenCanvas -> MediaStreamTrackGenerator (Chromium);
// elsewhere a <video> is drawn on a canvas whose captureStream() is sent.

import { backgroundOf } from "./settings.js";

const SEG_WIDTH = 256; // the landscape model's input (256x144): a bigger copy only costs upload time
const SEG_HEIGHT = 144;
const BLUR_SCALE = 4; // the blurred background is drawn at 1/4 size and scaled up: cheap and strong
const BLUR_PX = 6;
const EDGE_PX = 3; // the mask's edge is softened by this much
// No first processed frame this long after the start (a camera that sends nothing): the start fails, and the
// pipeline says so and leaves the effect off, instead of waiting forever.
const FIRST_FRAME_TIMEOUT_MS = 30_000;

// /static/ (this module is /static/js/call/effects/video.js; relative, so it works under any STATIC_URL).
const staticBase = () => new URL("../../../", import.meta.url).href;

let segmenterPromise = null;

function loadScript(src) {
  return new Promise((resolve, reject) => {
    const script = document.createElement("script");
    script.src = src;
    script.onload = resolve;
    script.onerror = () => reject(new Error(`cannot load ${src}`));
    document.head.append(script);
  });
}

/** The segmenter, loaded once per page (a few MB of WebAssembly). */
export function segmenter() {
  if (!segmenterPromise) {
    segmenterPromise = (async () => {
      const base = `${staticBase()}vendor/selfie_segmentation/`;
      if (!window.SelfieSegmentation) await loadScript(`${base}selfie_segmentation.js`);
      const seg = new window.SelfieSegmentation({ locateFile: (file) => base + file });
      seg.setOptions({ modelSelection: 1, selfieMode: false });
      const listeners = { result: null };
      seg.onResults((results) => listeners.result?.(results));
      await seg.initialize();
      return { seg, listeners };
    })();
    segmenterPromise.catch(() => { segmenterPromise = null; });
  }
  return segmenterPromise;
}

const images = new Map();
function backgroundImage(effect) {
  const bg = backgroundOf(effect);
  if (!bg) return Promise.resolve(null);
  if (!images.has(bg.id)) {
    images.set(bg.id, new Promise((resolve, reject) => {
      const img = new Image();
      img.onload = () => resolve(img);
      img.onerror = () => { images.delete(bg.id); reject(new Error(`cannot load background ${bg.file}`)); };
      img.src = `${staticBase()}img/backgrounds/${bg.file}`;
    }));
  }
  return images.get(bg.id);
}

function canvas(width, height) {
  if (window.OffscreenCanvas) return new OffscreenCanvas(width, height);
  const c = document.createElement("canvas");
  c.width = width;
  c.height = height;
  return c;
}

/** Draws `image` to cover width x height (cropping the overflow, like CSS object-fit: cover). */
function drawCover(ctx, image, width, height) {
  const scale = Math.max(width / image.width, height / image.height);
  const w = image.width * scale;
  const h = image.height * scale;
  ctx.drawImage(image, (width - w) / 2, (height - h) / 2, w, h);
}

/** Composites frames: the person (from the latest mask) over a blurred copy of the frame or an image. */
class Compositor {
  constructor() {
    this.width = 0;
    this.height = 0;
    this.segInput = canvas(SEG_WIDTH, SEG_HEIGHT);
    this.segCtx = this.segInput.getContext("2d", { willReadFrequently: false });
    this.mask = canvas(SEG_WIDTH, SEG_HEIGHT);
    this.maskCtx = this.mask.getContext("2d");
    this.hasMask = false;
    this.effect = "blur";
    this.image = null;
    this.frames = 0; // frames composed (diagnostics and the benchmark)
    this.masks = 0; // masks computed
  }

  resize(width, height) {
    if (width === this.width && height === this.height) return;
    this.width = width;
    this.height = height;
    this.out = canvas(width, height);
    this.outCtx = this.out.getContext("2d");
    this.person = canvas(width, height);
    this.personCtx = this.person.getContext("2d");
    this.small = canvas(Math.ceil(width / BLUR_SCALE), Math.ceil(height / BLUR_SCALE));
    this.smallCtx = this.small.getContext("2d");
  }

  setMask(mask) {
    this.maskCtx.globalCompositeOperation = "copy";
    this.maskCtx.drawImage(mask, 0, 0, SEG_WIDTH, SEG_HEIGHT);
    this.hasMask = true;
    this.masks += 1;
  }

  compose(source, width, height) {
    this.resize(width, height);
    const { outCtx, personCtx, smallCtx, small } = this;
    outCtx.globalCompositeOperation = "copy";
    if (this.image) {
      drawCover(outCtx, this.image, width, height);
    } else {
      smallCtx.filter = `blur(${BLUR_PX}px)`;
      smallCtx.drawImage(source, 0, 0, small.width, small.height);
      smallCtx.filter = "none";
      outCtx.imageSmoothingQuality = "low";
      outCtx.drawImage(small, 0, 0, width, height);
    }
    if (this.hasMask) {
      personCtx.globalCompositeOperation = "copy";
      personCtx.filter = `blur(${EDGE_PX}px)`;
      personCtx.drawImage(this.mask, 0, 0, width, height);
      personCtx.filter = "none";
      personCtx.globalCompositeOperation = "source-in";
      personCtx.drawImage(source, 0, 0, width, height);
      outCtx.globalCompositeOperation = "source-over";
      outCtx.drawImage(this.person, 0, 0);
    }
    this.frames += 1;
    return this.out;
  }
}

/**
 * Starts the effect on camera track `source`: resolves with {track, update(effect), stop()} (EffectPipeline's
 * processor), after the segmenter is loaded and the first frame is out, so nothing unprocessed is ever sent.
 */
export async function startVideoEffect(source, effect) {
  const { seg, listeners } = await segmenter();
  const compositor = new Compositor();
  compositor.effect = effect;
  compositor.image = await backgroundImage(effect);
  let busy = false;
  let stopped = false;
  listeners.result = (results) => { if (!stopped) compositor.setMask(results.segmentationMask); };

  // At most one segmentation in flight; frames arriving meanwhile reuse the last mask.
  const segment = (frameSource, width, height) => {
    if (busy) return;
    busy = true;
    compositor.segCtx.drawImage(frameSource, 0, 0, width, height, 0, 0, SEG_WIDTH, SEG_HEIGHT);
    seg.send({ image: compositor.segInput })
      .catch((err) => console.warn("effects: segmentation failed", err))
      .finally(() => { busy = false; });
  };

  const handle = window.MediaStreamTrackProcessor && window.MediaStreamTrackGenerator
    ? insertableStreams(source, compositor, segment, () => stopped)
    : canvasCapture(source, compositor, segment, () => stopped);
  let timer;
  try {
    await Promise.race([handle.firstFrame, new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error("no processed frame in time")), FIRST_FRAME_TIMEOUT_MS);
    })]);
  } catch (err) {
    stopped = true;
    listeners.result = null;
    handle.stop();
    throw err;
  } finally {
    clearTimeout(timer);
  }
  return {
    track: handle.track,
    compositor,
    async update(next) {
      compositor.image = await backgroundImage(next);
      compositor.effect = next;
    },
    stop() {
      stopped = true;
      listeners.result = null;
      handle.stop();
    },
  };
}

function insertableStreams(source, compositor, segment, isStopped) {
  const processor = new MediaStreamTrackProcessor({ track: source });
  const generator = new MediaStreamTrackGenerator({ kind: "video" });
  // The generated track has no content hint of its own: keep the camera's (detail vs motion trade-off).
  generator.contentHint = source.contentHint;
  const reader = processor.readable.getReader();
  const writer = generator.writable.getWriter();
  let firstResolve;
  let firstReject;
  const firstFrame = new Promise((resolve, reject) => { firstResolve = resolve; firstReject = reject; });
  firstFrame.catch(() => {}); // awaited by startVideoEffect; a late rejection is no one's business
  (async () => {
    try {
      for (;;) {
        const { value: frame, done } = await reader.read();
        if (done || isStopped()) { frame?.close(); break; }
        const width = frame.displayWidth;
        const height = frame.displayHeight;
        segment(frame, width, height);
        if (!compositor.hasMask) {
          // No mask yet: send nothing rather than the unprocessed background.
          frame.close();
          continue;
        }
        const out = new VideoFrame(compositor.compose(frame, width, height), { timestamp: frame.timestamp });
        frame.close();
        await writer.write(out);
        firstResolve();
      }
    } catch (err) {
      if (!isStopped()) console.warn("effects: video pipeline stopped", err);
      firstReject(err);
    } finally {
      firstReject(new Error("the camera track ended")); // no-op once the first frame was out
      reader.cancel().catch(() => {});
      writer.close().catch(() => {});
    }
  })();
  return {
    track: generator,
    firstFrame,
    stop() {
      reader.cancel().catch(() => {});
      generator.stop();
    },
  };
}

function canvasCapture(source, compositor, segment, isStopped) {
  const video = document.createElement("video");
  video.muted = true;
  video.playsInline = true;
  video.srcObject = new MediaStream([source]);
  video.play().catch(() => {});
  const frameRate = source.getSettings().frameRate || 30;
  let target = null;
  let track = null;
  let timer = null;
  let firstResolve;
  const firstFrame = new Promise((resolve) => { firstResolve = resolve; });
  const tick = () => {
    if (isStopped()) return;
    const width = video.videoWidth;
    const height = video.videoHeight;
    if (width && height) {
      segment(video, width, height);
      if (compositor.masks > 0) {
        const out = compositor.compose(video, width, height);
        if (!target) {
          target = document.createElement("canvas");
          target.width = width;
          target.height = height;
          track = target.captureStream(frameRate).getVideoTracks()[0];
          result.track = track;
        }
        target.getContext("2d").drawImage(out, 0, 0);
        firstResolve();
      }
    }
    // A timer, not requestAnimationFrame: a hidden tab must keep sending video.
    timer = setTimeout(tick, 1000 / frameRate);
  };
  const result = {
    track: null,
    firstFrame,
    stop() {
      clearTimeout(timer);
      track?.stop();
      video.srcObject = null;
    },
  };
  tick();
  return result;
}
