// seed: 视频管理 › 降级通话
import { RCCallErrorCode } from 'rcall/plugin-call';

/**
 * 返回Promise<{code: RCCallErrorCode}>
 */
const { code } = await session.descendAbility()
if (code === RCCallErrorCode.SUCCESS) {
  // do something
}
