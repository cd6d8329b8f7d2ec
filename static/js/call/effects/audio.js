// RNNoise noise suppression on the microphone track: an AudioWorklet running RNNoise compiled to WebAssembly
// (npm @sapphi-red/web-noise-suppressor, which wraps @shiguredo/rnnoise-wasm), served from /static/vendor/noise/
// (`make vendor`). The microphone goes through the worklet into a MediaStreamAudioDestinationNode, whose
// track is the one sent. RNNoise works on 48 kHz audio: the AudioContext is opened at 48 kHz.

const base = () => new URL("../../../vendor/noise/", import.meta.url).href;

let wasmPromise = null;
let moduleLoaded = null;

async function library() {
  const lib = await import(`${base()}index.js`);
  if (!wasmPromise) {
    wasmPromise = lib.loadRnnoise({ url: `${base()}rnnoise.wasm`, simdUrl: `${base()}rnnoise_simd.wasm` });
    wasmPromise.catch(() => { wasmPromise = null; });
  }
  return { lib, wasm: await wasmPromise };
}

/** Whether this browser can run the suppressor (AudioWorklet). */
export function rnnoiseSupported() {
  return !!(window.AudioContext && window.AudioWorkletNode && window.WebAssembly);
}

/** Starts RNNoise on microphone track `source`: resolves with {track, stop()} (EffectPipeline's processor). */
export async function startNoiseSuppression(source) {
  if (!rnnoiseSupported()) throw new Error("this browser has no AudioWorklet");
  const { lib, wasm } = await library();
  const ctx = new AudioContext({ sampleRate: 48000 });
  try {
    if (moduleLoaded?.ctx !== ctx) await ctx.audioWorklet.addModule(`${base()}rnnoiseWorklet.js`);
    moduleLoaded = { ctx };
    const input = ctx.createMediaStreamSource(new MediaStream([source]));
    const rnnoise = new lib.RnnoiseWorkletNode(ctx, { wasmBinary: wasm, maxChannels: 1 });
    const output = ctx.createMediaStreamDestination();
    output.channelCount = 1;
    input.connect(rnnoise).connect(output);
    // An AudioContext created without a user gesture may start suspended; the call page has had one (Join).
    if (ctx.state === "suspended") ctx.resume().catch(() => {});
    const track = output.stream.getAudioTracks()[0];
    track.enabled = source.enabled;
    return {
      track,
      node: rnnoise,
      context: ctx,
      stop() {
        rnnoise.destroy();
        track.stop();
        ctx.close().catch(() => {});
      },
    };
  } catch (err) {
    ctx.close().catch(() => {});
    throw err;
  }
}
