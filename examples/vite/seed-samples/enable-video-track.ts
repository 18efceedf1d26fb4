// seed: 视频管理 › 启用本地视频 (the 禁用本地视频 block is empty in the seed)
import { RCCallErrorCode } from 'rcall/plugin-call';

/**
 * 返回Promise<{code: RCCallErrorCode}>
 */
const { code } = await session.enableVideoTrack()
if (code === RCCallErrorCode.SUCCESS) {
  // do something
}
