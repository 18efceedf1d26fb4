// TypeScript declarations of rcall's public API (CallLib 5.X compatible).
//
// One module backs every entry: `rcall` (this file) and the per-RongCloud-package entries
// `rcall/imlib-next`, `rcall/engine`, `rcall/plugin-rtc`, `rcall/plugin-call` (+ `rcall/imlib-v4-adapter`,
// `rcall/imlib-v2-adapter`), which re-export from here under the names those packages use.

// The enums, with CallLib's names and values (the JS objects come from rtc-core's `enums_json`;
// tests/e2e/npm-package.test.mjs checks that these declarations match them member by member).
export declare enum ErrorCode {
  SUCCESS = 0, ACTIVE_DISCONNECT = 2, REJECTED_BY_BLACKLIST = 405, NOT_IN_WHITELIST = 407,
  NOT_IN_GROUP = 22406, FORBIDDEN_IN_GROUP = 22408, RC_NET_CHANNEL_INVALID = 30001,
  RC_NET_UNAVAILABLE = 30002, RC_MSG_RESP_TIMEOUT = 30003, RC_MSG_SEND_FAIL = 30014,
  CONNECT_OVER_FREQUENCY = 30015, RC_CONN_ACK_TIMEOUT = 31000, RC_CONN_TOKEN_INCORRECT = 31004,
  RC_CONN_USER_BLOCKED = 31009, RC_DISCONN_KICK = 31010, RC_CONN_TOKEN_EXPIRED = 31020,
  BIZ_ERROR_CLIENT_NOT_INIT = 33001, BIZ_ERROR_INVALID_PARAMETER = 33003, RC_CONNECTION_EXIST = 34001,
  CONNECTION_TIMEOUT = 34006,
}
export declare enum ConversationType {
  NONE = 0, PRIVATE = 1, DISCUSSION = 2, GROUP = 3, CHATROOM = 4, CUSTOMER_SERVICE = 5, SYSTEM = 6,
  APP_PUBLIC_SERVICE = 7, PUBLIC_SERVICE = 8, ULTRA_GROUP = 10, RTC_ROOM = 12,
}
export declare enum RCConnectionStatus { CONNECTED = 0, CONNECTING = 1, DISCONNECTED = 2, SUSPENDED = 3 }
export declare enum Events {
  CONNECTING = 'CONNECTING', CONNECTED = 'CONNECTED', DISCONNECT = 'DISCONNECT', SUSPEND = 'SUSPEND',
  MESSAGES = 'MESSAGES',
}
export declare enum RCRTCCode {
  SUCCESS = 10000, SIGNAL_DISCONNECTED = 50000, PARAMS_ERROR = 50001, REPERT_JOIN_ROOM = 50002,
  NOT_IN_ROOM = 50003, SERVICE_INVALID = 50004, RTC_TOKEN_INVALID = 50006, SIGNAL_ERROR = 53001,
  CREATE_OFFER_FAILED = 53003, REQUEST_FAILED = 53004, ROOM_HAS_BEEN_DESTROYED = 53008,
  NOT_OPEN_VIDEO_AUDIO_SERVER = 53009, GET_USER_MEDIA_FAILED = 53010, PERMISSION_DENIED = 53012,
  INVALID_TAGS = 53014, INVALID_USER_ID = 53015, BROWSER_NOT_SUPPORT = 53019, TRACK_NOT_READY = 53020,
  VIDEO_TRACK_MISS_MEDIA_ELEMENT = 53021, TRACK_PLAY_ERROR = 53022,
  PUBLISH_TRACK_LIMIT_EXCEEDED = 53026, SIGNAL_JOIN_RTC_ROOM_REFUSED = 53028,
  SOME_TRACKS_PUBLISH_FAILED = 53031,
}
export declare enum RCKickReason { SERVER_KICK = 1, OTHER_KICK = 2 }
export declare enum RCRTCPingResult { SUCCESS = 'Success', FAIL = 'Fail' }
export declare enum RCMediaType { AUDIO_ONLY = 0, VIDEO_ONLY = 1, AUDIO_VIDEO = 2 }
export declare enum RTCJoinType { KICK = 0, REFUSE = 1, COEXIST = 2 }
export declare enum RCFrameRate { FPS_10 = 'FPS_10', FPS_15 = 'FPS_15', FPS_24 = 'FPS_24', FPS_30 = 'FPS_30' }
export declare enum RCResolution {
  W176_H132 = 'W176_H132', W176_H144 = 'W176_H144', W256_H144 = 'W256_H144', W320_H180 = 'W320_H180',
  W240_H240 = 'W240_H240', W320_H240 = 'W320_H240', W480_H360 = 'W480_H360', W640_H360 = 'W640_H360',
  W480_H480 = 'W480_H480', W640_H480 = 'W640_H480', W720_H480 = 'W720_H480', W1280_H720 = 'W1280_H720',
  W1920_H1080 = 'W1920_H1080',
}
export declare enum RCCallErrorCode {
  SUCCESS = 10000, STATE_MACHINE_EXIT = 53200, SEND_MSG_ERROR = 53201, REJECTED_BY_BLACKLIST = 53202,
  NOT_IN_GROUP = 53203, GET_LOCAL_AUDIO_TRACK_ERROR = 53301, GET_LOCAL_VIDEO_TRACK_ERROR = 53302,
  GET_LOCAL_AUDIO_AND_VIDEO_TRACK_ERROR = 53303, JOIN_ROOM_ERROR = 53304, AUDIO_PUBLISH_ERROR = 53305,
  VIDEO_PUBLISH_ERROR = 53306, AUDIO_AND_VIDEO_PUBLISH_ERROR = 53307,
  QUERY_JOINED_USER_INFO_ERROR = 53308, MISSING_VIDEO_TRACK_ERROR = 53309,
  UNPUBLISH_VIDEO_ERROR = 53310, CONVERSATION_NOT_GROUP_ERROR = 53311, PARAM_ERROR = 53312,
}
export declare enum RCCallEndReason {
  CANCEL = 1, REJECT = 2, HANGUP = 3, BUSY_LINE = 4, NO_RESPONSE = 5, ENGINE_UNSUPPORTED = 6,
  NETWORK_ERROR = 7, GET_MEDIA_RESOURCES_ERROR = 8, PUBLISH_ERROR = 9, SUBSCRIBE_ERROR = 10,
  REMOTE_CANCEL = 11, REMOTE_REJECT = 12, REMOTE_HANGUP = 13, REMOTE_BUSY_LINE = 14,
  REMOTE_NO_RESPONSE = 15, REMOTE_ENGINE_UNSUPPORTED = 16, REMOTE_NETWORK_ERROR = 17,
  REMOTE_GET_MEDIA_RESOURCE_ERROR = 18, REMOTE_PUBLISH_ERROR = 19, REMOTE_SUBSCRIBE_ERROR = 20,
  OTHER_CLIENT_JOINED_CALL = 21, OTHER_CLIENT_IN_CALL = 22, KICKED_BY_SERVER = 23,
  ACCEPT_SYSTEM_CALL = 24, REMOTE_OTHER_CLIENT_JOINED_CALL = 31, REMOTE_OTHER_CLIENT_IN_CALL = 32,
  REMOTE_KICKED_BY_SERVER = 33, REMOTE_ACCEPT_SYSTEM_CALL = 34, ACCEPT_BY_OTHER_CLIENT = 101,
  HANGUP_BY_OTHER_CLIENT = 102, ADDED_TO_BLACKLIST = 103, SERVICE_NOT_OPENED = 104,
}
export declare enum RCCallSessionState { WAITING = 0, KEEPING = 1, END = 2 }
export declare enum RCCallUserState { NONE = 0, WAITING = 1, KEEPING = 2 }
export declare enum RCCallMediaType { AUDIO = 1, AUDIO_VIDEO = 2 }
export declare enum RCCallLanguage { ZH = 'zh', EN = 'en' }

/** String enums also accept their plain values (`'FPS_15'` as well as `RCFrameRate.FPS_15`). */
export type EnumValue<E extends string> = E | `${E}`;

export interface ISenderInfo { userId: string; name?: string; portraitUri?: string; extra?: string }
export type IInvitedUsers = ISenderInfo;
export interface IMuteUser { userId: string; muted: boolean; kind?: 'audio' | 'video'; trackId?: string }
export interface IUserData {
  userId: string; state: RCCallUserState; isCaller: boolean; isRemote: boolean;
  name?: string; portraitUri?: string; extra?: string;
}
export interface IEndSummary {
  conversationType: ConversationType; channelId: string; targetId: string; mediaType: RCCallMediaType;
  beginTimestamp: number; endTimestamp: number; duration: number; endReason: RCCallEndReason;
}
export interface IOfflineRecord {
  channelId: string; conversationType: number; targetId: string; callId: string; inviterId: string;
  mediaType: RCCallMediaType; endReason: RCCallEndReason; beginTimestamp: number; endTimestamp: number; duration: number;
}

export interface RCTrack {
  isLocalTrack(): boolean;
  isAudioTrack(): boolean;
  isVideoTrack(): boolean;
  getUserId(): string;
  getTrackId(): string;
  getStreamId(): string;
  getTag(): string;
  isReady(): boolean;
  getMediaStreamTrack(): MediaStreamTrack;
  /** Muted here (local: not sending; remote: not played). */
  isLocalMuted(): boolean;
  /** Muted by its publisher. */
  isOwnerMuted(): boolean;
  mute(): Promise<{ code: number }>;
  unmute(): Promise<{ code: number }>;
  /** Stops a local track (camera light off). */
  destroy(): void;
  /** Video needs an element (53021 otherwise); remote audio plays without one. */
  play(element?: HTMLMediaElement, options?: { volume?: number; audioDeviceId?: string }): Promise<{ code: number }>;
}

/**
 * Required members = the keys `call`/`callInGroup`/`registerSessionListener` check at run time
 * (they throw naming the missing ones, as CallLib does). Some of the seed's abbreviated samples
 * omit `onMemberModify`/`onMediaModify`: they fail here rather than when the call starts.
 */
export interface ISessionListener {
  onRinging(sender: ISenderInfo, session: RCCallSession): void;
  onAccept(sender: ISenderInfo, session: RCCallSession): void;
  onHungup(sender: ISenderInfo, reason: RCCallEndReason, session: RCCallSession): void;
  onTrackReady(track: RCTrack, session?: RCCallSession): void;
  onMemberModify(sender: ISenderInfo, invitedUsers: IInvitedUsers[], session: RCCallSession): void;
  onMediaModify(sender: ISenderInfo, mediaType: RCCallMediaType, session: RCCallSession): void;
  onAudioMuteChange?(muteUser: IMuteUser, session: RCCallSession): void;
  onVideoMuteChange?(muteUser: IMuteUser, session: RCCallSession): void;
  onICEConnectionStateChange?(state: RTCIceConnectionState, session: RCCallSession): void;
  onRTCStateReport?(report: IRCRTCStateReport, session: RCCallSession): void;
  /** The seed's stats sample spells it with a capital O; both are accepted. */
  OnRTCStateReport?(report: IRCRTCStateReport, session: RCCallSession): void;
}

export interface IRCCandidatePairStat {
  IP: string; port: number; networkType: string | null; remoteIP: string; remotePort: number; protocol: string;
  bitrateSend: number; bitrateRecv: number; rtt: number | null;
  availableOutgoingBitrate: number | null; availableIncomingBitrate: number | null;
}
export interface IRCTrackStat {
  id?: string; trackId: string; kind: 'audio' | 'video'; packetsLostRate: number | null; remoteResource: boolean;
  audioLevel?: number; frameHeight?: number; frameWidth?: number; frameRate?: number; bitrate: number; jitter: number | null;
}
/** One report per peer connection, about once a second; `pcName` is the remote user id. */
export interface IRCRTCStateReport {
  pcName?: string; timestamp: number; iceCandidatePair?: IRCCandidatePairStat;
  senders: IRCTrackStat[]; receivers: IRCTrackStat[];
}
export interface IDeviceInfo { deviceId: string; groupId: string; kind: 'audioinput' | 'videoinput' | 'audiooutput'; label: string }

/** Microphone settings (RTCLib's name, typo included). */
export interface IMicphoneAudioProfile { micphoneId?: string; sampleRate?: number }
/** Camera settings; the seed marks `frameRate` and `resolution` required (defaults FPS_15, W640_H480). */
export interface ICameraVideoProfile {
  cameraId?: string; frameRate: EnumValue<RCFrameRate>; resolution: EnumValue<RCResolution>; faceMode?: 'user' | 'environment';
}
export interface ICallConstraints { audio?: IMicphoneAudioProfile; video?: ICameraVideoProfile }

export interface ICallParams {
  targetId: string;
  mediaType?: RCCallMediaType;
  listener: ISessionListener;
  constraints?: ICallConstraints;
  channelId?: string;
  extra?: string;
  pushTitle?: string;
  pushContent?: string;
}
export interface IGroupCallParams extends ICallParams { userIds: string[] }

export interface RCCallSession {
  registerSessionListener(listener: ISessionListener): void;
  accept(constraints?: ICallConstraints): Promise<{ code: number }>;
  hungup(): Promise<{ code: number }>;
  /** Group calls only: 53311 on a 1:1 call. */
  invite(userIds: string[], options?: { extra?: string; pushTitle?: string; pushContent?: string }): Promise<{ code: number }>;
  descendAbility(): Promise<{ code: number }>;
  disableAudioTrack(): Promise<{ code: number }>;
  enableAudioTrack(): Promise<{ code: number }>;
  disableVideoTrack(): Promise<{ code: number }>;
  enableVideoTrack(): Promise<{ code: number }>;
  changeAudioDevice(constraints?: IMicphoneAudioProfile): Promise<{ code: number }>;
  /**
   * rcall extension: which simulcast layer of `userId`'s video to receive in a group call through
   * the SFU (`'auto'`, the default: by the number of tiles); kept for the call. 53312 for a user
   * not in the call; a mesh call succeeds without change. Another `layer` throws.
   */
  setRemoteVideoLayer(userId: string, layer: 'high' | 'low' | 'auto'): Promise<{ code: number }>;
  getSessionId(): string;
  /** The media room id (= the session id) once this user is in the call; `undefined` before and after. */
  getRTCSessionId(): string | undefined;
  getTargetId(): string;
  getConversationType(): number;
  getChannelId(): string;
  getMediaType(): RCCallMediaType;
  getCallerId(): string;
  getState(): RCCallSessionState;
  getUserState(userId: string): RCCallUserState;
  getRemoteUsers(): IUserData[];
}

export interface IJoinedUserInfo {
  deviceId: string;
  roomId: string;
  /** Server time (ms) when the device joined. */
  joinTime: number;
}

export interface RCCallClient {
  call(params: ICallParams): Promise<{ code: number; session?: RCCallSession }>;
  callInGroup(params: IGroupCallParams): Promise<{ code: number; session?: RCCallSession }>;
  registerUserInfo(info?: { name?: string; portraitUri?: string; extra?: string }): void;
  /** Which calls the user's devices are in (`roomId` = call id); code 53308 when the server cannot be asked. */
  getJoinedUserInfo(userId: string): Promise<{ code: number; data?: IJoinedUserInfo[] }>;
  /** Invite and hangup push configs; wrong types throw `[RCCallClient setPushConfig] …`. */
  setPushConfig(callPushConfig?: IPushConfig | null, hungupPushConfig?: IPushConfig | null): void;
}

/** CallLib's push config (5.1.2 / 5.1.3 / 5.2.4); unknown keys are passed to the push webhook as is. */
export interface IPushConfig {
  pushTitle?: string;
  pushContent?: string;
  pushData?: string;
  iOSConfig?: { threadId?: string; apnsCollapseId?: string; category?: string; richMediaUri?: string; interruptionLevel?: 'passive' | 'active' | 'time-sensitive' | 'critical' };
  androidConfig?: {
    notificationId?: string; channelIdMi?: string; miLargeIconUrl?: string; channelIdHW?: string; categoryHW?: string;
    importanceHW?: 'NORMAL' | 'LOW'; imageUrlHW?: string; channelIdOPPO?: string; typeVivo?: '0' | '1'; categoryVivo?: string;
    googleConfig?: { collapseKey?: string; imageUrl?: string; priority?: string; channelId?: string; [key: string]: unknown };
    importanceHonor?: 'NORMAL' | 'LOW'; imageUrlHonor?: string;
  };
  harmonyOSConfig?: { imageUrl?: string; category?: string };
  disablePushTitle?: boolean;
  forceShowDetailContent?: boolean;
  templateId?: string;
}

export interface IRCCallInitOptions {
  rtcClient: RCRTCClient;
  onSession(session: RCCallSession, extra?: string): void;
  onSessionClose(session: RCCallSession, summary?: IEndSummary): void;
  onOfflineRecord?(record: IOfflineRecord): void;
  isAllowSubscribeRetry?: boolean;
  isAllowPublishRetry?: boolean;
  isOffCameraWhenVideoDisable?: boolean;
  joinType?: RTCJoinType;
  isAllowDemotionGetStream?: boolean;
  lang?: EnumValue<RCCallLanguage>;
  /** 5.2.2+: `LogL` level of the SDK's console output (ERROR 1, WARN 2, INFO 3, DEBUG 4). */
  logOutputLevel?: 1 | 2 | 3 | 4;
  /** Deprecated in 5.2.2: engine `LogLevel` (DEBUG 0 … ERROR 3, FATAL 4, STATISTICS 6, NONE 1000). */
  logLevel?: number;
  /** Deprecated in 5.2.2: receives the SDK's log lines instead of the console. */
  logStdout?(level: number, content: string): void;
}

export interface RCRTCClient { getCurrentId(): string | undefined }

/** rcall extensions: ICE servers and policy for the peer-to-peer connections. */
export interface IRCRTCInitOptions {
  iceServers?: RTCIceServer[];
  iceTransportPolicy?: RTCIceTransportPolicy;
  [other: string]: unknown;
}

export interface Installer<Options, Api> { tag: string; verify(): boolean; setup(options: Options): Api }

export interface IConnectResult { code: number; isOk: boolean; msg: string; data?: { userId: string } }

/**
 * `RongIMLib.init` options. `navi`: the rcall server's base URL (default: the page's origin), or
 * several (an array or one comma-separated string) tried in turn; `navigators`: the same as an
 * array. An entry that is not a URL or `host[:port]` makes `init()` throw.
 */
export interface IInitOptions { appkey: string; navi?: string | string[]; navigators?: string[]; [other: string]: unknown }

export declare const RongIMLib: {
  /** `navi`: the rcall server's base URL (default: the page's origin). */
  /** Returns the IMLib 4.X IM client (5.X apps ignore it). */
  init(options: IInitOptions): IMClient;
  /** IMLib 2.X entry point. */
  RongIMClient: RongIMClientStatic;
  /** IMLib 2.X / 4.X `ConnectionStatus` (the same numbers under both names). */
  ConnectionStatus: LegacyConnectionStatus;
  CONNECTION_STATUS: LegacyConnectionStatus;
  /**
   * Returns the plugin's API synchronously (the same instance for a tag installed twice). Typed
   * non-null so that the seed's `const caller: RCCallClient = installPlugin(...)` checks under
   * `--strict`; it is `null` only where `installer.verify()` fails (outside a browser).
   */
  installPlugin<O, A>(installer: Installer<O, A>, options?: O): A;
  connect(token: string): Promise<IConnectResult>;
  disconnect(): Promise<void>;
  getCurrentUserId(): string | undefined;
  /** `RCConnectionStatus`: CONNECTED 0, CONNECTING 1, DISCONNECTED 2, SUSPENDED 3. */
  getConnectionStatus(): number;
  /** `Events.CONNECTING` / `CONNECTED` (no argument), `DISCONNECT` / `SUSPEND` (an `ErrorCode`). */
  addEventListener(event: EnumValue<Events>, listener: (code?: number) => void): void;
  removeEventListener(event: EnumValue<Events>, listener: (code?: number) => void): void;
  removeEventListeners(event: EnumValue<Events>): void;
  ErrorCode: typeof ErrorCode;
  ConversationType: typeof ConversationType;
  RCConnectionStatus: typeof RCConnectionStatus;
  Events: typeof Events;
};

export declare const RCRTC: {
  installer: Installer<IRCRTCInitOptions, RCRTCClient>;
  device: {
    getCameras(): Promise<IDeviceInfo[]>;
    getMicrophones(): Promise<IDeviceInfo[]>;
    getSpeakers(): Promise<IDeviceInfo[]>;
    /** rcall extension: calls back with the new list on every change; returns a stop function. */
    onDeviceChange(callback: (devices: IDeviceInfo[]) => void): () => void;
  };
  RCRTCCode: typeof RCRTCCode;
  RCKickReason: typeof RCKickReason;
  RCRTCPingResult: typeof RCRTCPingResult;
  RCMediaType: typeof RCMediaType;
  RTCJoinType: typeof RTCJoinType;
  RCFrameRate: typeof RCFrameRate;
  RCResolution: typeof RCResolution;
};

export declare const RCCall: {
  installer: Installer<IRCCallInitOptions, RCCallClient>;
  RCCallErrorCode: typeof RCCallErrorCode;
  RCCallEndReason: typeof RCCallEndReason;
  RCCallSessionState: typeof RCCallSessionState;
  RCCallUserState: typeof RCCallUserState;
  RCCallMediaType: typeof RCCallMediaType;
  RCCallLanguage: typeof RCCallLanguage;
  RCFrameRate: typeof RCFrameRate;
  RCResolution: typeof RCResolution;
};

/** `RCRTC.installer` (what `@rongcloud/plugin-rtc` exports as `installer`). */
export declare const rtcInstaller: Installer<IRCRTCInitOptions, RCRTCClient>;
/** `RCCall.installer` (what `@rongcloud/plugin-call` exports as `installer`). */
export declare const callInstaller: Installer<IRCCallInitOptions, RCCallClient>;
/** `RCRTC.device`. */
export declare const device: typeof RCRTC.device;

/** Resolves once the wasm module has loaded (calls made earlier wait for it anyway). */
export declare const ready: Promise<void>;
declare const _default: { RongIMLib: typeof RongIMLib; RCRTC: typeof RCRTC; RCCall: typeof RCCall };
export default _default;

// ---- IMLib 4.X and 2.X entry points (README "IMLib 4.X and 2.X apps") ----
// (The imlib branch's declarations; `install()` typed non-null like `installPlugin()`, so that
// the seed's `const rtcClient: RCRTCClient = imClient.install(rtcInstaller)` checks under --strict.)
export interface LegacyConnectionStatus {
  readonly CONNECTED: 0; readonly CONNECTING: 1; readonly DISCONNECTED: 2; readonly NETWORK_UNAVAILABLE: 3;
  readonly KICKED_OFFLINE_BY_OTHER_CLIENT: 6; readonly BLOCKED: 9;
}
/** IMLib 4.X: what `RongIMLib.init()` returns. */
export interface IMClient {
  install<O, A>(installer: Installer<O, A>, options?: O): A;
  /** Resolves the user; rejects `{code, msg}` (IMLib codes, e.g. 31004). */
  connect(options: { token: string }): Promise<{ id: string }>;
  disconnect(): Promise<void>;
  /** `status({status})` on every change of the legacy `ConnectionStatus`; `message` is never called. */
  watch(watcher: { status?(event: { status: number }): void; message?(event: unknown): void; [other: string]: unknown }): void;
  unwatch(): void;
  getCurrentUserId(): string | undefined;
  getConnectionStatus(): number;
}
/** IMLib 2.X: `RongIMClient.getInstance()` (`IMClient` in `rcall/imlib-v2-adapter`, as in IMLib 2.X). */
export interface RongIMClientInstance {
  install<O, A>(installer: Installer<O, A>, options?: O): A;
  disconnect(): void;
  logout(): void;
  getCurrentUserId(): string | undefined;
  getCurrentConnectionStatus(): number;
}
/** IMLib 2.X: `RongIMLib.RongIMClient`. */
export interface RongIMClientStatic {
  /** `options.navi`: the rcall server (URL, or a bare `host[:port]` taking the page's scheme); several: an array or a comma-separated string. */
  init(appkey: string, dataAccessProvider?: unknown, options?: { navi?: string | string[]; [other: string]: unknown }): void;
  getInstance(): RongIMClientInstance;
  connect(token: string, callbacks: {
    onSuccess(userId: string): void;
    /** 31004 (incorrect) or 31020 (expired). */
    onTokenIncorrect(): void;
    onError(errorCode: number): void;
  }): void;
  setConnectionStatusListener(listener: { onChanged(status: number): void }): void;
  /** Accepted; rcall's link carries no non-call messages. */
  setOnReceiveMessageListener(listener: { onReceived(message: unknown, left?: number): void }): void;
}
