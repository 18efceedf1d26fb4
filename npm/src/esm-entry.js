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
// The facade already reports a failed load; an app that never awaits `ready` gets no second,
// unhandled rejection.
ready.catch(() => {});
export default { RongIMLib, RCRTC, RCCall };

// Named exports of the enums and installers. `pick` is marked pure so that a bundler drops the
// ones an app does not import (a plain property read counts as a possible side effect).
const pick = (o, k) => o[k];
export const ErrorCode = /* @__PURE__ */ pick(RongIMLib, 'ErrorCode');
export const ConversationType = /* @__PURE__ */ pick(RongIMLib, 'ConversationType');
export const RCConnectionStatus = /* @__PURE__ */ pick(RongIMLib, 'RCConnectionStatus');
export const Events = /* @__PURE__ */ pick(RongIMLib, 'Events');
export const RCRTCCode = /* @__PURE__ */ pick(RCRTC, 'RCRTCCode');
export const RCKickReason = /* @__PURE__ */ pick(RCRTC, 'RCKickReason');
export const RCRTCPingResult = /* @__PURE__ */ pick(RCRTC, 'RCRTCPingResult');
export const RCMediaType = /* @__PURE__ */ pick(RCRTC, 'RCMediaType');
export const RTCJoinType = /* @__PURE__ */ pick(RCRTC, 'RTCJoinType');
export const RCFrameRate = /* @__PURE__ */ pick(RCRTC, 'RCFrameRate');
export const RCResolution = /* @__PURE__ */ pick(RCRTC, 'RCResolution');
export const RCCallErrorCode = /* @__PURE__ */ pick(RCCall, 'RCCallErrorCode');
export const RCCallEndReason = /* @__PURE__ */ pick(RCCall, 'RCCallEndReason');
export const RCCallSessionState = /* @__PURE__ */ pick(RCCall, 'RCCallSessionState');
export const RCCallUserState = /* @__PURE__ */ pick(RCCall, 'RCCallUserState');
export const RCCallMediaType = /* @__PURE__ */ pick(RCCall, 'RCCallMediaType');
export const RCCallLanguage = /* @__PURE__ */ pick(RCCall, 'RCCallLanguage');
export const rtcInstaller = /* @__PURE__ */ pick(RCRTC, 'installer');
export const callInstaller = /* @__PURE__ */ pick(RCCall, 'installer');
export const device = /* @__PURE__ */ pick(RCRTC, 'device');
