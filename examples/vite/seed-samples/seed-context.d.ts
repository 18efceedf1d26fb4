// What the seed's snippets use without defining it: the app's own variables (the snippets come
// from a Vue app: `this.targetId`, a `user` in scope, the chosen `mediaType`, ...). Declared here,
// once, so that the snippets themselves stay as the seed prints them.
declare const user: { userId: string };
declare const mediaType: import('rcall/plugin-call').RCCallMediaType;
declare const userIds: string[];
declare const targetId: string;
declare const userId: string;
declare const listener: import('rcall/plugin-call').ISessionListener;
declare const session: import('rcall/plugin-call').RCCallSession;
declare const caller: import('rcall/plugin-call').RCCallClient;
declare const imClient: import('rcall/imlib-v4-adapter').IMClient;
declare const rtcClient: import('rcall/plugin-rtc').RCRTCClient;
declare const callPushConfig: { pushTitle?: string; pushContent?: string };
declare const hungupPushConfig: { pushTitle?: string; pushContent?: string };
declare const audioConstraints: import('rcall/plugin-rtc').IMicphoneAudioProfile;
/** The Vue component the snippets' `this` is (`this.targetId`). */
interface SeedApp { targetId: string }
