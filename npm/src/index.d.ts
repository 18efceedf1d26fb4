// TypeScript declarations of rcall's public API (CallLib 5.X compatible).

export declare enum RCCallMediaType { AUDIO = 1, AUDIO_VIDEO = 2 }
export declare enum RCCallSessionState { WAITING = 0, KEEPING = 1, END = 2 }
export declare enum RCCallUserState { NONE = 0, WAITING = 1, KEEPING = 2 }
export type RCCallLanguage = 'zh' | 'en';
export type RCFrameRate = 'FPS_10' | 'FPS_15' | 'FPS_24' | 'FPS_30';
export type RCResolution =
  | 'W176_H132' | 'W176_H144' | 'W256_H144' | 'W320_H180' | 'W240_H240' | 'W320_H240' | 'W480_H360'
  | 'W640_H360' | 'W480_H480' | 'W640_H480' | 'W720_H480' | 'W1280_H720' | 'W1920_H1080';

/** Numeric enum objects, keyed by name (values as in CallLib 5.X). */
export type EnumObject = Readonly<Record<string, number>>;

export interface ISenderInfo { userId: string; name?: string; portraitUri?: string; extra?: string }
export type IInvitedUsers = ISenderInfo;
export interface IMuteUser { userId: string; muted: boolean; kind?: 'audio' | 'video'; trackId?: string }
export interface IUserData {
  userId: string; state: RCCallUserState; isCaller: boolean; isRemote: boolean;
  name?: string; portraitUri?: string; extra?: string;
}
export interface IEndSummary {
  conversationType: number; channelId: string; targetId: string; mediaType: RCCallMediaType;
  beginTimestamp: number; endTimestamp: number; duration: number; endReason: number;
}
export interface IOfflineRecord {
  channelId: string; conversationType: number; targetId: string; callId: string; inviterId: string;
  mediaType: RCCallMediaType; endReason: number; beginTimestamp: number; endTimestamp: number; duration: number;
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

export interface ISessionListener {
  onRinging(sender: ISenderInfo, session: RCCallSession): void;
  onAccept(sender: ISenderInfo, session: RCCallSession): void;
  onHungup(sender: ISenderInfo, reason: number, session: RCCallSession): void;
  onTrackReady(track: RCTrack, session?: RCCallSession): void;
  onMemberModify(sender: ISenderInfo, invitedUsers: IInvitedUsers[], session: RCCallSession): void;
  onMediaModify(sender: ISenderInfo, mediaType: RCCallMediaType, session: RCCallSession): void;
  onAudioMuteChange?(muteUser: IMuteUser, session: RCCallSession): void;
  onVideoMuteChange?(muteUser: IMuteUser, session: RCCallSession): void;
  onICEConnectionStateChange?(state: RTCIceConnectionState, session: RCCallSession): void;
  onRTCStateReport?(report: IRCRTCStateReport, session: RCCallSession): void;
  /** The seed's spelling of `onRTCStateReport` (either works). */
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

export interface ICallConstraints {
  audio?: { micphoneId?: string; sampleRate?: number };
  video?: { cameraId?: string; frameRate: RCFrameRate; resolution: RCResolution; faceMode?: 'user' | 'environment' };
}

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
  changeAudioDevice(constraints?: { micphoneId?: string; sampleRate?: number }): Promise<{ code: number }>;
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
  joinType?: number;
  isAllowDemotionGetStream?: boolean;
  lang?: RCCallLanguage;
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

export declare const RongIMLib: {
  /** `navi`: the rcall server's base URL (default: the page's origin). */
  /** Returns the IMLib 4.X IM client (5.X apps ignore it). */
  init(options: { appkey: string; navi?: string; navigators?: string[]; [other: string]: unknown }): IMClient;
  /** IMLib 2.X entry point. */
  RongIMClient: RongIMClientStatic;
  /** IMLib 2.X / 4.X `ConnectionStatus` (the same numbers under both names). */
  ConnectionStatus: LegacyConnectionStatus;
  CONNECTION_STATUS: LegacyConnectionStatus;
  installPlugin<O, A>(installer: Installer<O, A>, options: O): A | null;
  connect(token: string): Promise<IConnectResult>;
  disconnect(): Promise<void>;
  getCurrentUserId(): string | undefined;
  /** `RCConnectionStatus`: CONNECTED 0, CONNECTING 1, DISCONNECTED 2, SUSPENDED 3. */
  getConnectionStatus(): number;
  /** `Events.CONNECTING` / `CONNECTED` (no argument), `DISCONNECT` / `SUSPEND` (an `ErrorCode`). */
  addEventListener(event: string, listener: (code?: number) => void): void;
  removeEventListener(event: string, listener: (code?: number) => void): void;
  removeEventListeners(event: string): void;
  ErrorCode: EnumObject;
  ConversationType: EnumObject;
  RCConnectionStatus: EnumObject;
  Events: { CONNECTING: 'CONNECTING'; CONNECTED: 'CONNECTED'; DISCONNECT: 'DISCONNECT'; SUSPEND: 'SUSPEND'; MESSAGES: 'MESSAGES' };
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
  RCRTCCode: EnumObject;
  RCKickReason: EnumObject;
  RCMediaType: EnumObject;
  RTCJoinType: EnumObject;
  RCFrameRate: Readonly<Record<RCFrameRate, RCFrameRate>>;
  RCResolution: Readonly<Record<RCResolution, RCResolution>>;
};

export declare const RCCall: {
  installer: Installer<IRCCallInitOptions, RCCallClient>;
  RCCallErrorCode: EnumObject;
  RCCallEndReason: EnumObject;
  RCCallSessionState: typeof RCCallSessionState;
  RCCallUserState: typeof RCCallUserState;
  RCCallMediaType: typeof RCCallMediaType;
  RCCallLanguage: Readonly<{ ZH: 'zh'; EN: 'en' }>;
  RCFrameRate: Readonly<Record<RCFrameRate, RCFrameRate>>;
  RCResolution: Readonly<Record<RCResolution, RCResolution>>;
};

/** Resolves once the wasm module has loaded (calls made earlier wait for it anyway). */
export declare const ready: Promise<void>;
declare const _default: { RongIMLib: typeof RongIMLib; RCRTC: typeof RCRTC; RCCall: typeof RCCall };
export default _default;

// ---- IMLib 4.X and 2.X entry points (README "IMLib 4.X and 2.X apps") ----
export interface LegacyConnectionStatus {
  readonly CONNECTED: 0; readonly CONNECTING: 1; readonly DISCONNECTED: 2; readonly NETWORK_UNAVAILABLE: 3;
  readonly KICKED_OFFLINE_BY_OTHER_CLIENT: 6; readonly BLOCKED: 9;
}
/** IMLib 4.X: what `RongIMLib.init()` returns. */
export interface IMClient {
  install<O, A>(installer: Installer<O, A>, options?: O): A | null;
  /** Resolves the user; rejects `{code, msg}` (IMLib codes, e.g. 31004). */
  connect(options: { token: string }): Promise<{ id: string }>;
  disconnect(): Promise<void>;
  /** `status({status})` on every change of the legacy `ConnectionStatus`; `message` is never called. */
  watch(watcher: { status?(event: { status: number }): void; message?(event: unknown): void; [other: string]: unknown }): void;
  unwatch(): void;
  getCurrentUserId(): string | undefined;
  getConnectionStatus(): number;
}
/** IMLib 2.X: `RongIMClient.getInstance()`. */
export interface RongIMClientInstance {
  install<O, A>(installer: Installer<O, A>, options?: O): A | null;
  disconnect(): void;
  logout(): void;
  getCurrentUserId(): string | undefined;
  getCurrentConnectionStatus(): number;
}
/** IMLib 2.X: `RongIMLib.RongIMClient`. */
export interface RongIMClientStatic {
  /** `options.navi`: the rcall server (URL, or a bare `host[:port]` taking the page's scheme). */
  init(appkey: string, dataAccessProvider?: unknown, options?: { navi?: string; [other: string]: unknown }): void;
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
