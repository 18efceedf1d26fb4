// A 1:1 video call written the way CallLib 5.X apps are: against RongCloud's three npm packages.
// This file does not know about rcall; vite.config.ts aliases the package names to rcall's
// entries (rcall/imlib-next, rcall/plugin-rtc, rcall/plugin-call) and tsconfig.json's `paths`
// does the same for tsc.
//
// The server is `?navi=URL` (default http://127.0.0.1:8080); tokens come from its dev-only
// GET /dev/token (run it with --dev). `?appkey=`, `?user=`, `?target=` prefill.
import * as RongIMLib from '@rongcloud/imlib-next';
import { installer as rtcInstaller, RCRTCClient, RCTrack } from '@rongcloud/plugin-rtc';
import { installer as callInstaller, RCCallSession, IEndSummary, ISenderInfo, RCCallEndReason, IMuteUser } from '@rongcloud/plugin-call';
import { RCCallClient, RCCallMediaType, RCCallErrorCode, ISessionListener } from '@rongcloud/plugin-call';

const params = new URLSearchParams(location.search);
const navi = params.get('navi') ?? 'http://127.0.0.1:8080';
const appkey = params.get('appkey') ?? 'rcall-dev-app';

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const ui = {
  user: $<HTMLInputElement>('user'),
  login: $<HTMLButtonElement>('login'),
  target: $<HTMLInputElement>('target'),
  call: $<HTMLButtonElement>('call'),
  accept: $<HTMLButtonElement>('accept'),
  mute: $<HTMLButtonElement>('mute'),
  hangup: $<HTMLButtonElement>('hangup'),
  status: $<HTMLParagraphElement>('status'),
  remoteMute: $<HTMLParagraphElement>('remote-mute'),
  local: $<HTMLVideoElement>('local'),
  remote: $<HTMLVideoElement>('remote'),
};
ui.user.value = params.get('user') ?? '';
ui.target.value = params.get('target') ?? '';

let caller: RCCallClient | null = null;
let session: RCCallSession | null = null;
let muted = false;

const status = (text: string) => { ui.status.textContent = text; };
function setState(state: 'idle' | 'outgoing' | 'incoming' | 'connected') {
  ui.call.disabled = !caller || state !== 'idle';
  ui.accept.disabled = state !== 'incoming';
  ui.mute.disabled = state !== 'connected';
  ui.hangup.disabled = state === 'idle';
}

/** Words for the end reasons this app expects; the number for the others. */
function endReason(reason: RCCallEndReason | undefined): string {
  switch (reason) {
    case RCCallEndReason.HANGUP: return 'you hung up';
    case RCCallEndReason.REMOTE_HANGUP: return 'the other side hung up';
    case RCCallEndReason.REMOTE_REJECT: return 'declined';
    case RCCallEndReason.REMOTE_NO_RESPONSE: return 'no answer';
    default: return `reason ${reason}`;
  }
}

const listener: ISessionListener = {
  onRinging: (sender: ISenderInfo) => status(`${sender.userId} is ringing…`),
  onAccept: (sender: ISenderInfo) => { status(`In call with ${sender.userId}`); setState('connected'); },
  onHungup: (sender: ISenderInfo, reason: RCCallEndReason) => status(`${sender.userId} left: ${endReason(reason)}`),
  onTrackReady: (track: RCTrack) => {
    if (track.isLocalTrack()) {
      if (track.isVideoTrack()) void track.play(ui.local); // never play local audio
    } else if (track.isAudioTrack()) {
      void track.play(); // the SDK plays remote audio itself
    } else {
      void track.play(ui.remote);
    }
  },
  onMemberModify: () => {},
  onMediaModify: () => {},
  onAudioMuteChange: (muteUser: IMuteUser) => {
    ui.remoteMute.textContent = `${muteUser.userId} ${muteUser.muted ? 'muted' : 'unmuted'} the microphone`;
  },
  onVideoMuteChange: () => {},
};

ui.login.addEventListener('click', async () => {
  const userId = ui.user.value.trim();
  if (!userId) return;
  ui.login.disabled = true;
  try {
    const resp = await fetch(`${navi}/dev/token?userId=${encodeURIComponent(userId)}`);
    const body = await resp.json();
    if (body.code !== 200) throw new Error(`GET /dev/token → ${JSON.stringify(body)} (is the server running with --dev?)`);
    RongIMLib.init({ appkey, navi });
    const rtcClient: RCRTCClient = RongIMLib.installPlugin(rtcInstaller, {});
    caller = RongIMLib.installPlugin(callInstaller, {
      rtcClient,
      onSession: (s: RCCallSession) => {
        session = s;
        s.registerSessionListener(listener);
        ui.target.value = s.getCallerId();
        status(`Incoming call from ${s.getCallerId()}`);
        setState('incoming');
      },
      onSessionClose: (_s: RCCallSession, summary?: IEndSummary) => {
        status(`Call ended: ${endReason(summary?.endReason)}`);
        session = null;
        muted = false;
        ui.mute.textContent = 'Mute';
        ui.local.srcObject = ui.remote.srcObject = null;
        setState('idle');
      },
    });
    const res = await RongIMLib.connect(body.token);
    if (res.code !== RongIMLib.ErrorCode.SUCCESS) throw new Error(`connect → code ${res.code}`);
    status(`Logged in as ${res.data?.userId}.`);
    setState('idle');
  } catch (e) {
    status(`Login failed: ${(e as Error).message}`);
    ui.login.disabled = false;
  }
});

ui.call.addEventListener('click', async () => {
  const targetId = ui.target.value.trim();
  if (!caller || !targetId) return;
  setState('outgoing');
  status(`Calling ${targetId}…`);
  const { code, session: s } = await caller.call({ targetId, mediaType: RCCallMediaType.AUDIO_VIDEO, listener });
  if (code !== RCCallErrorCode.SUCCESS || !s) {
    status(`Call failed: code ${code}`);
    setState('idle');
    return;
  }
  session = s;
});

ui.accept.addEventListener('click', async () => {
  if (!session) return;
  ui.accept.disabled = true;
  const { code } = await session.accept();
  if (code === RCCallErrorCode.SUCCESS) { status(`In call with ${session.getTargetId()}`); setState('connected'); }
  else status(`Accept failed: code ${code}`);
});

ui.mute.addEventListener('click', async () => {
  if (!session) return;
  const { code } = muted ? await session.enableAudioTrack() : await session.disableAudioTrack();
  if (code === RCCallErrorCode.SUCCESS) {
    muted = !muted;
    ui.mute.textContent = muted ? 'Unmute' : 'Mute';
  }
});

ui.hangup.addEventListener('click', () => { void session?.hungup(); });

setState('idle');
