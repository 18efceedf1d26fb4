// `rcall/imlib-next`: IMLib 5.X's functions, enums and types that a CallLib app uses.
import type { RongIMLib } from './index.js';
export declare const init: typeof RongIMLib.init;
export declare const connect: typeof RongIMLib.connect;
export declare const disconnect: typeof RongIMLib.disconnect;
export declare const installPlugin: typeof RongIMLib.installPlugin;
export declare const getCurrentUserId: typeof RongIMLib.getCurrentUserId;
export declare const getConnectionStatus: typeof RongIMLib.getConnectionStatus;
export declare const addEventListener: typeof RongIMLib.addEventListener;
export declare const removeEventListener: typeof RongIMLib.removeEventListener;
export declare const removeEventListeners: typeof RongIMLib.removeEventListeners;
export { ErrorCode, ConversationType, RCConnectionStatus, Events, IInitOptions, IConnectResult, IMClient } from './index.js';
