// seed: 设置音频参数 › 接听时设置

const { code } = await session.accept({
  // 音频参数设置
  audio: {
    // 麦克风的deviceId, 这里以"xxxx"举例
    micphoneId: 'xxxx',
    // 采样率
    sampleRate: 48,
  }
});
