// seed: 发起呼叫 › 邀请通话 › 示例代码
import { RCCallErrorCode } from 'rcall/plugin-call';

const { code } = await session.invite(userIds);
if (code === RCCallErrorCode.SUCCESS) {
  // do something
}
