// `rcall/imlib-v4-adapter`: IMLib 4.X's `init()` and its IM client.
import type { RongIMLib } from './index.js';
export declare const init: typeof RongIMLib.init;
export declare const ConnectionStatus: typeof RongIMLib.ConnectionStatus;
export { ErrorCode, ConversationType, RCConnectionStatus, Events, IInitOptions, IMClient } from './index.js';
