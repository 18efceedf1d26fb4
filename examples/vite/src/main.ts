// A 1:1 video call with rcall's npm package (ESM + TypeScript declarations), bundled by Vite.
//
// The rcall server (signalling, tokens, the SDK's wasm is bundled here) is `?navi=URL`, else
// VITE_RCALL_SERVER, else http://127.0.0.1:8080. Tokens come from the server's dev-only
// GET /dev/token (run it with --dev); a real app gets them from its own backend, which calls
// POST /user/getToken.json. `?appkey=` overrides the dev app key, `?user=` / `?target=` prefill.
import { RongIMLib, RCRTC, RCCall } from 'rcall';
import type { ISessionListener, RCCallClient, RCCallSession, RCTrack } from 'rcall';

const params = new URLSearchParams(location.search);
const navi = params.get('navi') ?? import.meta.env.VITE_RCALL_SERVER ?? 'http://127.0.0.1:8080';
const appkey = params.get('appkey') ?? 'rcall-dev-app';

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const ui = {
  user: $<HTMLInputElement>('user'),
  login: $<HTMLButtonElement>('login'),
  target: $<HTMLInputElement>('target'),
  call: $<HTMLButtonElement>('call'),
  accept: $<HTMLButtonElement>('accept'),
  hangup: $<HTMLButtonElement>('hangup'),
  status: $<HTMLParagraphElement>('status'),
  local: $<HTMLVideoElement>('local'),
  remote: $<HTMLVideoElement>('remote'),
};
ui.user.value = params.get('user') ?? '';
ui.target.value = params.get('target') ?? '';

let caller: RCCallClient | null = null;
let session: RCCallSession | null = null;

const status = (text: string) => { ui.status.textContent = text; };
function setState(state: 'idle' | 'outgoing' | 'incoming' | 'connected') {
  ui.call.disabled = !caller || state !== 'idle';
  ui.accept.disabled = state !== 'incoming';
  ui.hangup.disabled = state === 'idle';
}

const listener: ISessionListener = {
  onRinging: (sender) => status(`${sender.userId} is ringing…`),
  onAccept: (sender) => { status(`In call with ${sender.userId}`); setState('connected'); },
  onHungup: (sender, reason) => status(`${sender.userId} hung up (${reason})`),
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
    const rtcClient = RongIMLib.installPlugin(RCRTC.installer, {})!;
    caller = RongIMLib.installPlugin(RCCall.installer, {
      rtcClient,
      onSession: (s) => {
        session = s;
        s.registerSessionListener(listener);
        ui.target.value = s.getCallerId();
        status(`Incoming call from ${s.getCallerId()}`);
        setState('incoming');
      },
      onSessionClose: (_s, summary) => {
        status(`Call ended (${summary?.endReason})`);
        session = null;
        ui.local.srcObject = ui.remote.srcObject = null;
        setState('idle');
      },
    });
    const res = await RongIMLib.connect(body.token);
    if (res.code !== 0) throw new Error(`RongIMLib.connect → code ${res.code}`);
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
  const res = await caller.call({ targetId, mediaType: RCCall.RCCallMediaType.AUDIO_VIDEO, listener });
  if (res.code !== RCCall.RCCallErrorCode.SUCCESS || !res.session) {
    status(`Call failed: code ${res.code}`);
    setState('idle');
    return;
  }
  session = res.session;
});

ui.accept.addEventListener('click', async () => {
  if (!session) return;
  ui.accept.disabled = true;
  const res = await session.accept();
  if (res.code === RCCall.RCCallErrorCode.SUCCESS) { status(`In call with ${session.getTargetId()}`); setState('connected'); }
  else status(`Accept failed: code ${res.code}`);
});

ui.hangup.addEventListener('click', () => { void session?.hungup(); });

setState('idle');
