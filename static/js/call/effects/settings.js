// The effect choices (pure: no DOM, no media): what the pickers offer, and how a choice is remembered in
// localStorage across pages and reloads. Unit-tested in tests/js/effects.test.mjs.

export const STORAGE_KEY = "conference.effects";

/** Bundled background images (our own, static/img/backgrounds/): id -> file and label. */
export const BACKGROUNDS = [
  { id: "dusk", label: "Dusk", file: "dusk.png" },
  { id: "forest", label: "Forest", file: "forest.png" },
  { id: "studio", label: "Studio", file: "studio.png" },
];

/** Video: "off", "blur", or "bg:<id>" of BACKGROUNDS. */
export const VIDEO_EFFECTS = [
  { value: "off", label: "No effect" },
  { value: "blur", label: "Blur background" },
  ...BACKGROUNDS.map((b) => ({ value: `bg:${b.id}`, label: `Background: ${b.label}` })),
];

/** Noise suppression: none, the browser's own (getUserMedia `noiseSuppression`), or RNNoise (WebAssembly). */
export const NOISE_MODES = [
  { value: "off", label: "Off" },
  { value: "browser", label: "Browser" },
  { value: "rnnoise", label: "RNNoise (stronger)" },
];

// Browsers turn their own suppression on by default: so does the page.
export const DEFAULTS = Object.freeze({ video: "off", noise: "browser" });

export function validVideo(value) {
  return VIDEO_EFFECTS.some((e) => e.value === value);
}

export function validNoise(value) {
  return NOISE_MODES.some((m) => m.value === value);
}

/** The background entry of a "bg:<id>" effect, or null. */
export function backgroundOf(effect) {
  if (typeof effect !== "string" || !effect.startsWith("bg:")) return null;
  return BACKGROUNDS.find((b) => b.id === effect.slice(3)) || null;
}

/** Saved settings merged on the defaults; anything unknown (an older page, a hand edit) is dropped. */
export function loadEffects(storage) {
  let saved = {};
  try {
    saved = JSON.parse(storage?.getItem(STORAGE_KEY) || "{}") || {};
  } catch {
    saved = {};
  }
  return {
    video: validVideo(saved.video) ? saved.video : DEFAULTS.video,
    noise: validNoise(saved.noise) ? saved.noise : DEFAULTS.noise,
  };
}

/** Remember `settings` (only valid fields); storage that refuses (private mode, quota) is not an error. */
export function saveEffects(storage, settings) {
  const clean = loadEffects({ getItem: () => JSON.stringify(settings) });
  try {
    storage?.setItem(STORAGE_KEY, JSON.stringify(clean));
  } catch { /* not remembered: the choice still applies to this page */ }
  return clean;
}

/** getUserMedia audio constraints for a noise mode: RNNoise replaces the browser's suppressor (not both). */
export function audioProcessing(noise) {
  return { noiseSuppression: noise === "browser" };
}
