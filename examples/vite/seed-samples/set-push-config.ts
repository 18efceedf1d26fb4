// seed: 主叫方 / 被叫方 设置呼叫、挂断推送信息
/**
 * 设置呼叫、挂断推送数据
 * @param callPushConfig 呼叫推送配置
 * @param callPushConfig.pushTitle 呼叫推送标题
 * @param callPushConfig.pushContent 呼叫推送内容
 * @param hungupPushConfig 挂断推送配置
 * @param hungupPushConfig.pushTitle 挂断推送标题
 * @param hungupPushConfig.pushContent 挂断推送内容
 */
caller.setPushConfig(callPushConfig, hungupPushConfig);
