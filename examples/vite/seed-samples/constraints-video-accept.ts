// seed: 设置视频参数 › 接听时设置
import { RCFrameRate, RCResolution } from 'rcall/plugin-rtc';

const { code } = await session.accept({
  // 视频参数设置
  video: {
    // 摄像头的deviceId, 以"xxxx"举例
    cameraId: "xxxx",
    // 默认帧率为 15
    frameRate: RCFrameRate.FPS_15,
    // 默认分辨率为 640 * 480
    resolution: RCResolution.W640_H480
  }
});
