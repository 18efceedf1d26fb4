// ESM entry of the npm package: the same globals as the CDN script, as named exports.
import init, * as wasm from './rcall_sdk.js';

const g = createRcallGlobals(
  () => init({ module_or_path: new URL('rcall_sdk_bg.wasm', import.meta.url) }).then(() => wasm),
  __RCALL_ENUMS__,
);
export const RongIMLib = g.RongIMLib;
export const RCRTC = g.RCRTC;
export const RCCall = g.RCCall;
/** Resolves once the wasm module is loaded (optional: calls made earlier wait for it). */
export const ready = g.ready.then(() => undefined);
export default { RongIMLib, RCRTC, RCCall };
