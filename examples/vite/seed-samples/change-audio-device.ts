// seed: 更换输入设备 › 通话中更换音频输入设备 (both code blocks)
import { RCCallSession } from 'rcall/plugin-call';

session.changeAudioDevice(audioConstraints)

function addDevicesChangeListener(session: RCCallSession){
  navigator.mediaDevices.ondevicechange = null;
  // 添加设备变动的监听
  navigator.mediaDevices.ondevicechange = () => {
    // 取到变动后的设备
    navigator.mediaDevices.enumerateDevices().then((devices) => {
      // 这里用默认的音频输入设备举例
      session.changeAudioDevice();
    });
  };
}
// 在获得 session 后执行
addDevicesChangeListener(session)
