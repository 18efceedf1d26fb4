// `rcall/imlib-v4-adapter`: IMLib 4.X's `init({ appkey })`, which returns the IM client
// (`install`, `connect({ token })`, `watch`), for apps that alias `@rongcloud/imlib-v4-adapter` here.
import { RongIMLib } from './index.js';

export const init = (options) => RongIMLib.init(options);
export const ConnectionStatus = RongIMLib.ConnectionStatus;
export { ErrorCode, ConversationType, RCConnectionStatus, Events } from './index.js';
