// ESM entry of the npm package (`rcall`): the same globals as the CDN script, as named exports,
// plus every enum and both installers by name. The per-RongCloud-package entries
// (imlib-next.js, plugin-rtc.js, plugin-call.js, ...) re-export from this module, so the wasm
// and its glue exist once in a bundle whichever entries an app imports.
import init, * as wasm from './rcall_sdk.js';

const ENUMS = __RCALL_ENUMS__;
const g = createRcallGlobals(
  () => init({ module_or_path: new URL('rcall_sdk_bg.wasm', import.meta.url) }).then(() => wasm),
  ENUMS,
);
export const RongIMLib = g.RongIMLib;
export const RCRTC = g.RCRTC;
export const RCCall = g.RCCall;
/** Resolves once the wasm module is loaded (optional: calls made earlier wait for it). */
export const ready = g.ready.then(() => undefined);
export default { RongIMLib, RCRTC, RCCall };

export const { ErrorCode, ConversationType, RCConnectionStatus, Events } = RongIMLib;
export const { RCRTCCode, RCKickReason, RCRTCPingResult, RCMediaType, RTCJoinType, RCFrameRate, RCResolution } = RCRTC;
export const {
  RCCallErrorCode, RCCallEndReason, RCCallSessionState, RCCallUserState, RCCallMediaType, RCCallLanguage,
} = RCCall;
export const rtcInstaller = RCRTC.installer;
export const callInstaller = RCCall.installer;
export const device = RCRTC.device;
