// `rcall/plugin-call`: the values and types of `@rongcloud/plugin-call` that rcall implements.
export {
  callInstaller as installer, RCCallErrorCode, RCCallEndReason, RCCallSessionState, RCCallUserState,
  RCCallMediaType, RCCallLanguage, RCFrameRate, RCResolution,
  RCCallClient, RCCallSession, ISessionListener, ISenderInfo, IInvitedUsers, IMuteUser, IUserData,
  IEndSummary, IOfflineRecord, IRCCallInitOptions, ICallParams, IGroupCallParams, ICallConstraints,
  IJoinedUserInfo,
} from './index.js';
