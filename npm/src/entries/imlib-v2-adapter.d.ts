// `rcall/imlib-v2-adapter`: IMLib 2.X's `RongIMClient`; `IMClient` is what its `getInstance()` returns.
import type { RongIMLib } from './index.js';
export declare const RongIMClient: typeof RongIMLib.RongIMClient;
export declare const ConnectionStatus: typeof RongIMLib.ConnectionStatus;
export { ErrorCode, ConversationType, RCConnectionStatus, Events, RongIMClientInstance as IMClient, RongIMClientStatic } from './index.js';
