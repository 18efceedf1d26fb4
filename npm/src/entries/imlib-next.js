// `rcall/imlib-next`: IMLib 5.X's module functions and enums (`import * as RongIMLib from
// '@rongcloud/imlib-next'`), for apps that alias that name here.
import { RongIMLib } from './index.js';

export const init = (options) => RongIMLib.init(options);
export const connect = (token) => RongIMLib.connect(token);
export const disconnect = () => RongIMLib.disconnect();
export const installPlugin = (installer, options) => RongIMLib.installPlugin(installer, options);
export const getCurrentUserId = () => RongIMLib.getCurrentUserId();
export const getConnectionStatus = () => RongIMLib.getConnectionStatus();
export const addEventListener = (event, listener) => RongIMLib.addEventListener(event, listener);
export const removeEventListener = (event, listener) => RongIMLib.removeEventListener(event, listener);
export const removeEventListeners = (event) => RongIMLib.removeEventListeners(event);
export { ErrorCode, ConversationType, RCConnectionStatus, Events } from './index.js';
