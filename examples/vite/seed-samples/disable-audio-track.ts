// seed: 音频管理 › 禁用本地音频 (the 启用本地音频 block is empty in the seed)
await session.disableAudioTrack()
