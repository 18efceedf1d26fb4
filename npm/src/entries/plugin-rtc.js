// `rcall/plugin-rtc`: what `@rongcloud/plugin-rtc` exports, for apps that alias that name here.
export {
  rtcInstaller as installer, device, RCRTCCode, RCKickReason, RCRTCPingResult, RCMediaType, RTCJoinType,
  RCFrameRate, RCResolution,
} from './index.js';
