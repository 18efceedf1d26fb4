// seed: 设置音频参数 › 发起单人通话时设置 (the seed's `listener: { ...... }` is `listener`, declared in seed-context.d.ts)

async function sample(this: SeedApp) {
  const { code, session } = await caller.call({
    targetId: this.targetId,
    mediaType,
    listener,
    constraints: {
      // 音频参数设置
      audio: {
        // 麦克风的deviceId, 这里以"xxxx"举例
        micphoneId: 'xxxx',
        // 采样率
        sampleRate: 48,
      }
    }
  });
}
