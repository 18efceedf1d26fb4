// seed: 实现音视频通话 › 步骤 7: 挂断 (also 拒绝/挂断通话 › 示例代码)
import { RCCallErrorCode } from 'rcall/plugin-call';

const { code } = await session.hungup();
if (code === RCCallErrorCode.SUCCESS) {
  // do something
}
