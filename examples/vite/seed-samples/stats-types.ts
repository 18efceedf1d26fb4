// seed: 通话数据统计 › 连接状态属性 / 流状态属性 (the seed's declarations, checked against rcall's)
import * as rtc from 'rcall/plugin-rtc';

interface IRCCandidatePairStat {
  /**
   * 本端 IP
   */
  IP: string;
  /**
   * 本地 UDP 端口
   */
  port: number;
  /**
   * 本地网络类型
   */
  networkType: string | null;
  /**
   * 远端 IP
   */
  remoteIP: string;
  /**
   * 远端 UDP 端口
   */
  remotePort: number;
  /**
   * 协议
   */
  protocol: string;
  /**
   * 发送总码率,单位 kbps
   */
  bitrateSend: number;
  /**
   * 接收总码率,单位 kbps
   */
  bitrateRecv: number;
  /**
   * (Round-Trip-Time) 往返时延,单位 ms
   */
  rtt: number | null;
  /**
   * 可用上行带宽,单位 bit
   */
  availableOutgoingBitrate: number | null;
  /**
   * 可用下行带宽,在无下行资源时,其值为 `0`,单位: `bit`
   */
  availableIncomingBitrate: number | null;
}

interface IRCTrackStat {
  id?: string;
  /**
   * 资源 Id
   */
  trackId: string;
  /**
   * 资源类型
   */
  kind: 'audio' | 'video';
  /**
   * 丢包率,有效值 `0` - `1`
   */
  packetsLostRate: number | null;
  /**
   * 是否是远端资源
   */
  remoteResource: boolean;
  /**
   * 音量
   */
  audioLevel?: number | null;
  /**
   * 视频高度
   */
  frameHeight?: number | null;
  /**
   * 视频宽度
   */
  frameWidth?: number | null;
  /**
   * 视频帧率
   */
  frameRate?: number | null;
  /**
   * 码率
   */
  bitrate: number;
  /**
   * 网络抖动,单位 ms
   * @description 下行数据中,同道流中只有一个 track 会有值,另一轨道数据值为 `0`
   */
  jitter: number | null;
}

// What rcall reports fits the seed's declarations (an app typed against them keeps compiling).
declare const pair: rtc.IRCCandidatePairStat;
declare const track: rtc.IRCTrackStat;
export const seedPair: IRCCandidatePairStat = pair;
export const seedTrack: IRCTrackStat = track;
