// seed: 监听通话结束 › 示例代码 (the seed's `......` stands for the other options, here rtcClient and onSession)
import * as RongIMLib from 'rcall/imlib-next';
import { installer as callInstaller, RCCallClient, RCCallSession, IEndSummary } from 'rcall/plugin-call';

/**
 * callib 客户端初始化
 */
const caller: RCCallClient = RongIMLib.installPlugin(callInstaller, {
  /**
   * 监听通话结束
   * 以下三条只要满足一条,就会触发onSessionClose
   * 1、本端用户自己主动挂断
   * 2、服务端把本端用户踢出 RTC 房间
   * 3、房间里小于2个人
   *
   * @param {RCCallSession} session 被结束的 session 对象
   * @param summaryInfo 结束一个 session 的后汇总信息
   */
  onSessionClose: (session: RCCallSession, summaryInfo?: IEndSummary) => {
  },
  rtcClient, onSession() {} // ......
})
