// seed: 通话数据统计 › 质量数据监控 › 获取质量数据
import { IRCRTCStateReport, IRCCandidatePairStat, IRCTrackStat } from 'rcall/plugin-rtc'
import { RCCallSession } from 'rcall/plugin-call';
/**
 * 在 session 实例上注册事件监听
 */
session.registerSessionListener({
  /**
   * 用于接收状态数据报告
   * @param report 报告信息
   * @param session 当前的 session 对象
   */
  OnRTCStateReport: (report: IRCRTCStateReport, session: RCCallSession) => {
    /**
     * 报告生成时间
     */
    const timestamp: number = report.timestamp
    /**
     * 对等连接状态数据,其中包含反应当前与媒体服务器之间的 UDP 通道质量的信息
     */
    const iceCandidatePair: IRCCandidatePairStat = report.iceCandidatePair
    /**
     * 所有的上行流的状态数据
     */
    const senders: IRCTrackStat[] = report.senders
    /**
     * 订阅的下行流状态数据
     */
    const receivers: IRCTrackStat[] = report.receivers
  }
});
