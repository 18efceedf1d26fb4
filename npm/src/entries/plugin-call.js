// `rcall/plugin-call`: what `@rongcloud/plugin-call` exports, for apps that alias that name here.
export {
  callInstaller as installer, RCCallErrorCode, RCCallEndReason, RCCallSessionState, RCCallUserState,
  RCCallMediaType, RCCallLanguage, RCFrameRate, RCResolution,
} from './index.js';
