// seed: 通话信息 (one statement per code block: getSessionId, getUserState, getState, getTargetId,
// getConversationType, getChannelId, getRemoteUsers; the getRTCSessionId block is empty in the seed)
/**
 * 返回 string 类型
 */
session.getSessionId()
/**
 * 返回 RCCallUserState 枚举值 0表示用户不存在于通话中 1表示等待接听 2表示通话中
 * @parm {string} userId
 */
session.getUserState(userId)
/**
 * 返回枚举值,表示 session 的当前状态 0 等待建立连接 1 会话维持中 2会话已结束
 */
session.getState()
/**
 * 返回 string 类型
 */
session.getTargetId()
/**
 * 返回 number 类型 1表示单聊 3表示群组
 */
session.getConversationType()
/**
 * 返回 string 类型
 */
session.getChannelId()
/**
 * 返回Array<IUserData>类型
 */
session.getRemoteUsers()
