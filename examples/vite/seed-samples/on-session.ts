// seed: 监听来电 › 示例代码 (the seed's `......` stands for the other options, here rtcClient and onSessionClose)
import * as RongIMLib from 'rcall/imlib-next';
import { installer as callInstaller, RCCallClient, RCCallSession } from 'rcall/plugin-call';

/**
 * callib 客户端初始化
 */
const caller: RCCallClient = RongIMLib.installPlugin(callInstaller, {
  /**
   * 监听来电, 会产生一个新的 session 对象 (必填)
   */
  onSession: (session: RCCallSession, extra?: string) => {
    /**
     * 通话的 session 实例,需要注册通话过程中的事件监听
     * session.registerSessionListener({...})
     */
  },
  rtcClient, onSessionClose() {} // ......
})
