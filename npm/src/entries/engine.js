// `rcall/engine`: the IM enums of `@rongcloud/engine` that a CallLib app uses, for apps that alias
// that name here.
export { ErrorCode, ConversationType, RCConnectionStatus, Events } from './index.js';
