// seed: 设置视频参数 › 发起多人通话时设置 (the seed's `listener: { ...... }` is `listener`, declared in seed-context.d.ts)
import { RCFrameRate, RCResolution } from 'rcall/plugin-rtc';

const { code, session } = await caller.callInGroup({
  targetId,
  mediaType,
  userIds,
  listener,
  constraints: {
    // 视频参数设置
    video: {
      // 摄像头的deviceId, 以"xxxx"举例
      cameraId: "xxxx",
      // 默认帧率为 15
      frameRate: RCFrameRate.FPS_15,
      // 默认分辨率为 640 * 480
      resolution: RCResolution.W640_H480
    }
  }
});
