// seed: 实现音视频通话 › 步骤 5: 发起单人通话
import { RCTrack } from 'rcall/plugin-rtc';
import { RCCallSession, ISenderInfo, RCCallEndReason } from 'rcall/plugin-call';

async function sample(this: SeedApp) {
  /**
   * 发起单人通话,如果成功后会产生一个新的session
   * @param targetId 被呼叫一方的用户 id 必填
   * @param mediaType 1->音频呼叫 or 2->音视频呼叫 必填
   * @param listener session对象上注册的事件 (必填)
   * @param constraints 获取音频或音视频资源时的参数 可选
   * @param params.channelId 组织 Id 可选
   */
  const { code, session } = await caller.call({
    targetId: this.targetId,
    mediaType,
    listener: {
      /**
       * 当远端用户已开始响铃,表示对方已收到呼叫请求 (必填)
       * @param sender 已响铃的用户
       * @param session 当前的 session 对象
       */
      onRinging(sender: ISenderInfo, session: RCCallSession){
        const { userId } = sender;
      },
      /**
       * 当远端用户同意接听 (必填)
       * @param sender 远端用户
       * @param session 当前的 session 对象
       */
      onAccept(sender: ISenderInfo, session: RCCallSession){
        const { userId } = sender;
      },
      /**
       * 当有远端用户挂断 (必填)
       * @param sender 远端用户
       * @param reason 挂断的原因
       * @param session 当前的 session 对象
       */
      onHungup(sender: ISenderInfo, reason: RCCallEndReason, session: RCCallSession){
        const { userId } = sender;
      },
      /**
       * 本端资源或远端资源已获取 (必填)
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
            'video' + user.userId
          ) as HTMLVideoElement;
          track.play(video);
        }
      }
    }
  });
}
