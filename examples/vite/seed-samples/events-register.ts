// seed: 通话事件说明 › 接到通话邀请时注册
import { RCTrack } from 'rcall/plugin-rtc';
import { RCCallSession, ISenderInfo, RCCallEndReason, IInvitedUsers, RCCallMediaType, IMuteUser, RCCallErrorCode } from 'rcall/plugin-call';

/**
 * 在 session 实例上注册事件监听
 */
session.registerSessionListener({
  /**
   * 当远端用户已开始响铃,表示对方已收到呼叫请求
   * @param sender 已响铃的用户
   * @param session 当前的 session 对象
   */
  onRinging: (sender: ISenderInfo, session: RCCallSession) => {
    const { userId } = sender;
  },
  /**
   * 当远端用户同意接听
   * @param sender 远端用户
   * @param session 当前的 session 对象
   */
  onAccept: (sender: ISenderInfo, session: RCCallSession) => {
    const { userId } = sender;
  },
  /**
   * 当有远端用户挂断
   * @param sender 远端用户
   * @param reason 挂断的原因
   * @param session 当前的 session 对象
   */
  onHungup: (sender: ISenderInfo, reason: RCCallEndReason, session: RCCallSession) => {
    const { userId } = sender;
  },
  /**
   * 本端资源或远端资源已获取,track为本地音频或音视频, track不可设置成 Vue 组件的响应式数据
   * @param track 本端资源或远端资源
   * @param session 当前的 session 对象
   */
  onTrackReady: (track: RCTrack, session?: RCCallSession) => {
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
  },
  /**
   * 群组通话中有其他人被邀请加入
   * @param sender 发送者
   * @param invitedUsers 被邀请的用户列表
   * @param session 当前的 session 对象
   */
  onMemberModify: (sender: ISenderInfo, invitedUsers: IInvitedUsers[], session: RCCallSession) => {
  },
  /**
   * 通话类型改变时触发,例如: 从视频变成音频通话
   * @param sender 发送者
   * @param mediaType 1为音频通话 2为视频通话
   * @param session 当前的 session 对象
   */
  onMediaModify: (sender: ISenderInfo, mediaType: RCCallMediaType, session: RCCallSession) => {
  },
  /**
   * 对方静音后触发
   * @param muteUser 已静音的用户
   * @param session 当前的 session 对象
   */
  onAudioMuteChange: (muteUser: IMuteUser, session: RCCallSession) => {
  },
  /**
   * 对方禁用视频后触发
   * @param muteUser 已禁用视频的用户
   * @param session 当前的 session 对象
   */
  onVideoMuteChange: (muteUser: IMuteUser, session: RCCallSession) => {
  }
});
