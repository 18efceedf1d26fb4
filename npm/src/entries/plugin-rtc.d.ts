// `rcall/plugin-rtc`: the values and types of `@rongcloud/plugin-rtc` that rcall implements.
import type { RCTrack } from './index.js';
export {
  rtcInstaller as installer, device, RCRTCCode, RCKickReason, RCRTCPingResult, RCMediaType, RTCJoinType,
  RCFrameRate, RCResolution,
  RCRTCClient, RCTrack, IRCRTCInitOptions, IRCRTCStateReport, IRCCandidatePairStat, IRCTrackStat, IDeviceInfo,
  ICameraVideoProfile, IMicphoneAudioProfile,
} from './index.js';
/** RTCLib's track classes are one interface in rcall (`isLocalTrack()`, `isAudioTrack()` tell them apart). */
export type RCLocalTrack = RCTrack;
export type RCRemoteTrack = RCTrack;
export type RCAudioTrack = RCTrack;
export type RCVideoTrack = RCTrack;
export type RCLocalAudioTrack = RCTrack;
export type RCLocalVideoTrack = RCTrack;
export type RCRemoteAudioTrack = RCTrack;
export type RCRemoteVideoTrack = RCTrack;
