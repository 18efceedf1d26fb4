// `rcall/engine`: the IM enums of `@rongcloud/engine` that a CallLib app uses.
export { ErrorCode, ConversationType, RCConnectionStatus, Events } from './index.js';
