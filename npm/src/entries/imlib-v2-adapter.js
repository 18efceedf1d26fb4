// `rcall/imlib-v2-adapter`: IMLib 2.X's `RongIMClient` (`init(appkey, null, { navi })`,
// `getInstance().install(...)`, `connect(token, callbacks)`), for apps that alias
// `@rongcloud/imlib-v2-adapter` here.
import { RongIMLib } from './index.js';

export const RongIMClient = RongIMLib.RongIMClient;
export const ConnectionStatus = RongIMLib.ConnectionStatus;
export { ErrorCode, ConversationType, RCConnectionStatus, Events } from './index.js';
