// seed: 发起呼叫 › 挂断通话 › 示例代码
const { code } = await session.hungup();
// do something
