// `rcall/imlib-v2-adapter`: IMLib 2.X's `RongIMClient` and its IM client.
import type { RongIMLib } from './index.js';
export declare const RongIMClient: typeof RongIMLib.RongIMClient;
export { ErrorCode, ConversationType, RCConnectionStatus, Events, IMClient, RongIMClientStatic } from './index.js';
