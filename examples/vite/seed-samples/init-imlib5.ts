// seed: 初始化 › CallLib 配合 IMLib 5.X
import * as RongIMLib from 'rcall/imlib-next';
import { installer as rtcInstaller, RCRTCClient, RCTrack } from 'rcall/plugin-rtc';
import { installer as callInstaller, RCCallClient, RCCallSession, ISenderInfo, RCCallEndReason, IEndSummary, IOfflineRecord } from 'rcall/plugin-call';

// IM 客户端初始化 (IMLib 5.X)
RongIMLib.init({
  appkey: '<your-app-key>',
});
// RTC 客户端初始化
// RTCLib 全局变量定义为 RCRTC,使用 CDN 文件方式集成时,示例如下:
// const rtcClient = RongIMLib.installPlugin(RCRTC.installer, { /* 配置项 */ })
const rtcClient: RCRTCClient = RongIMLib.installPlugin(rtcInstaller, { /* 配置项 */ })
// CallLib 客户端初始化
// CallLib 全局变量定义为 RCCall,使用 CDN 文件集成时,示例如下:
const caller: RCCallClient = RongIMLib.installPlugin(callInstaller, {
  // rtcClient 实例 (必填)
  rtcClient,
  /**
   * 被动收到邀请 (收到一个远端发起的新会话), 会产生一个新的 session 对象 (必填)
   */
  onSession(session: RCCallSession){
    /**
     * **收到新的 session 后需要立即注册事件监听**
     */
    session.registerSessionListener({
      /**
       * 当远端用户已开始响铃,表示对方已收到呼叫请求
       * @param sender 已响铃的用户
       * @param session 当前的 session 对象
       */
      onRinging(sender: ISenderInfo, session: RCCallSession){
        const { userId } = sender;
      },
      /**
       * 当远端用户同意接听
       * @param sender 远端用户
       * @param session 当前的 session 对象
       */
      onAccept(sender: ISenderInfo, session: RCCallSession){
        const { userId } = sender;
      },
      /**
       * 当有远端用户挂断
       * @param sender 远端用户
       * @param reason 挂断的原因
       * @param session 当前的 session 对象
       */
      onHungup(sender: ISenderInfo, reason: RCCallEndReason, session: RCCallSession){
        const { userId } = sender;
      },
      /**
       * 本端资源或远端资源已获取
       * @param track 本端资源或远端资源, track 不可设置成 Vue 组件的响应式数据
       * @param session 当前的 session 对象
       */
      onTrackReady(track: RCTrack, session?: RCCallSession){
        // track.isLocalTrack() 是否为本地资源
        // track.isAudioTrack() 是否为音频
        // track.isVideoTrack() 是否为视频
        // track.getUserId() 产生该 track 的用户id
        // 播放音频。如果为远端音频,建议直接播放。如为本端音频,建议不播放,以减少回音。
        if (track.isAudioTrack() && !track.isLocalTrack()) {
          track.play();
        }
        // 视频在对应的容器里播放
        if (track.isVideoTrack()) {
          const video = document.getElementById(
            "video" + user.userId
          ) as HTMLVideoElement;
          track.play(video);
        }
      }
    });
  },
  /**
   * 以下三条只要满足一条,就会触发onSessionClose
   * 1、本端用户自己主动挂断
   * 2、服务端把本端用户踢出 RTC 房间
   * 3、房间里小于2个人
   * @param {RCCallSession} session 被结束的 session 对象
   * @param summaryInfo 结束一个 session 的后汇总信息
   */
  onSessionClose(session: RCCallSession, summaryInfo?: IEndSummary){
  },
  /**
   * 接收 IM 离线期间收到的呼叫记录 (按需监听)
   */
  onOfflineRecord(record: IOfflineRecord){
  }
});
