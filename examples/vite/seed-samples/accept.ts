// seed: 实现音视频通话 › 步骤 6: 接听 (also 接听通话 › 示例代码)
import { RCCallErrorCode } from 'rcall/plugin-call';

const { code } = await session.accept();
if (code === RCCallErrorCode.SUCCESS) {
  // do something
}
