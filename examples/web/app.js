// rcall demo app: a small call app on the documented CallLib 5.X API (the same code runs on
// RongCloud's SDK), without a framework or bundler. 1:1 and group calls, mute / camera toggles and
// the others' indicators, device pickers, downgrade to audio, an incoming-call panel with a ring
// tone, a stats overlay per member (onRTCStateReport), and the end reason in words.
// Tokens come from the demo server's GET /dev/token and groups from its POST /dev/group (both only
// with `rcall-server --dev`); a real app's backend calls POST /user/getToken.json and
// /group/join.json with its app secret instead.
(() => {
  'use strict';

  const $ = (id) => document.getElementById(id);
  const ui = Object.fromEntries([
    'login-form', 'user-id', 'app-key', 'login-btn', 'me', 'target-id', 'group', 'group-id', 'mic-select', 'cam-select',
    'audio-call', 'video-call', 'status', 'incoming', 'incoming-text', 'accept', 'reject', 'toggle-mic', 'toggle-cam',
    'downgrade', 'invite-id', 'invite', 'hangup', 'show-stats', 'tiles', 'log',
  ].map((id) => [id.replace(/-(\w)/g, (_, c) => c.toUpperCase()), $(id)]));

  if (typeof RongIMLib === 'undefined' || typeof RCCall === 'undefined') {
    ui.status.textContent = 'The SDK did not load from /sdk/rcall.js (run `bash npm/build.sh`).';
    ui.loginBtn.disabled = true;
    return;
  }
  const { RCCallMediaType: Media, RCCallErrorCode: Code, RCCallUserState: UserState } = RCCall;
  const GROUP = RongIMLib.ConversationType.GROUP; // 3

  // RCCallEndReason, in words (the seed's table).
  const END_REASONS = {
    1: 'you cancelled', 2: 'you rejected', 3: 'you hung up', 4: 'you were busy', 5: 'you did not answer',
    6: 'your engine is not supported', 7: 'network error', 8: 'could not open your camera/microphone',
    9: 'publishing your media failed', 10: 'receiving media failed', 11: 'the caller cancelled', 12: 'the callee rejected',
    13: 'the other side hung up', 14: 'the other side is busy', 15: 'no answer', 16: 'the other side\'s engine is not supported',
    17: 'the other side\'s network failed', 18: 'the other side could not open camera/microphone',
    19: 'the other side could not publish', 20: 'the other side could not receive', 21: 'you joined another call on another device',
    22: 'you are in a call on another device', 23: 'you were removed from the call', 24: 'you took a phone call',
    31: 'the other side joined another call', 32: 'the other side is in another call', 33: 'the other side was removed from the call',
    34: 'the other side took a phone call', 101: 'answered on another device', 102: 'hung up on another device',
    103: 'the other side blocked you', 104: 'audio/video calls are not enabled for this app',
  };
  const reasonText = (r) => `${END_REASONS[r] || 'ended'} (${r})`;
  const who = (u) => (u.name ? `${u.name} (${u.userId})` : u.userId);
  const ids = (text) => text.split(/[\s,]+/).filter(Boolean);

  let caller = null;   // RCCallClient
  let session = null;  // the current RCCallSession
  let me = null;
  let state = 'idle';  // idle | outgoing | incoming | connected
  let micMuted = false, camOff = false;
  const tiles = new Map(); // userId → { el, video, stats }

  const params = new URLSearchParams(location.search);
  for (const [p, input] of [['appkey', ui.appKey], ['user', ui.userId], ['target', ui.targetId]]) {
    if (params.get(p)) input.value = params.get(p);
  }

  function log(text) {
    const li = document.createElement('li');
    li.textContent = `${new Date().toLocaleTimeString()}  ${text}`;
    ui.log.prepend(li);
  }
  function status(text) { ui.status.textContent = text; log(text); }

  function setState(next) {
    state = next;
    const inCall = next === 'outgoing' || next === 'connected';
    const video = !!session && session.getMediaType() === Media.AUDIO_VIDEO;
    const group = !!session && session.getConversationType() === GROUP;
    ui.audioCall.disabled = ui.videoCall.disabled = !caller || next !== 'idle';
    ui.incoming.hidden = next !== 'incoming';
    ui.accept.disabled = ui.reject.disabled = next !== 'incoming';
    ui.hangup.disabled = ui.toggleMic.disabled = !inCall;
    ui.toggleCam.disabled = !inCall || !video;
    ui.downgrade.disabled = next !== 'connected' || !video;
    ui.invite.disabled = next !== 'connected' || !group;
    ui.camSelect.disabled = inCall; // CallLib 5.X cannot switch cameras during a call
    ui.tiles.classList.toggle('audio-only', !!session && !video);
    if (next === 'incoming') startRing(); else stopRing();
  }

  // ---- one tile per member: video, name, mute / camera-off / ringing badges, stats ----
  function tile(userId) {
    let t = tiles.get(userId);
    if (!t) {
      const el = document.createElement('figure');
      el.className = 'tile';
      el.dataset.user = userId;
      el.innerHTML = '<video autoplay muted playsinline></video><span class="avatar"></span>' +
        '<span class="badges"><i class="b-ring">ringing…</i><i class="b-mic">mic muted</i><i class="b-cam">camera off</i></span>' +
        '<pre class="stats"></pre><figcaption></figcaption>';
      el.querySelector('.avatar').textContent = userId.slice(0, 1).toUpperCase();
      el.querySelector('figcaption').textContent = userId === me ? `You (${me})` : userId;
      if (userId === me) ui.tiles.prepend(el); else ui.tiles.append(el);
      t = { el, video: el.querySelector('video'), stats: el.querySelector('.stats') };
      tiles.set(userId, t);
    }
    return t;
  }
  const mark = (userId, cls, on) => tile(userId).el.classList.toggle(cls, on);

  // The member list from the session: a tile for everyone invited or in the call, none for those gone.
  function syncMembers() {
    if (!session) return;
    const users = session.getRemoteUsers();
    tile(me);
    for (const u of users) {
      mark(u.userId, 'ringing', u.state === UserState.WAITING);
      tile(u.userId).el.querySelector('figcaption').textContent = who(u) + (u.isCaller ? ' · caller' : '');
    }
    for (const [userId, t] of tiles) {
      if (userId !== me && !users.some((u) => u.userId === userId)) { t.el.remove(); tiles.delete(userId); }
    }
  }

  function clearTiles() {
    for (const t of tiles.values()) t.el.remove();
    tiles.clear();
    micMuted = camOff = false;
    ui.toggleMic.textContent = 'Mute';
    ui.toggleCam.textContent = 'Camera off';
  }

  // Bitrates in kbit/s, one report per peer connection (pcName = that member's user id).
  function showStats(report) {
    const t = tiles.get(report.pcName);
    if (!t) return;
    const kbps = (list) => Math.round(list.reduce((sum, s) => sum + (s.bitrate || 0), 0));
    const video = report.receivers.find((s) => s.kind === 'video' && s.frameWidth);
    const losses = report.receivers.map((s) => s.packetsLostRate).filter((x) => x != null);
    const pair = report.iceCandidatePair;
    t.stats.textContent = [
      `↓ ${kbps(report.receivers)} kbps` + (video ? `  ${video.frameWidth}×${video.frameHeight}${video.frameRate ? ' @' + video.frameRate : ''}` : ''),
      `↑ ${kbps(report.senders)} kbps`,
      pair ? `rtt ${pair.rtt == null ? '–' : Math.round(pair.rtt)} ms · ${pair.protocol}` : 'connecting…',
      losses.length ? `loss ${Math.round(Math.max(...losses) * 100) / 100} %` : '',
    ].filter(Boolean).join('\n');
  }

  // ---- the ring tone: WebAudio, no sound file. 440+480 Hz twice, every 3 s, while ringing ----
  let audio = null, ring = null;
  function startRing() {
    if (ring || !audio) return;
    const gain = audio.createGain();
    gain.connect(audio.destination);
    const burst = () => {
      const t0 = audio.currentTime;
      for (const f of [440, 480]) {
        const o = audio.createOscillator();
        o.frequency.value = f;
        o.connect(gain);
        o.start(t0);
        o.stop(t0 + 1);
      }
      gain.gain.setValueAtTime(0.08, t0); gain.gain.setValueAtTime(0, t0 + 0.4);
      gain.gain.setValueAtTime(0.08, t0 + 0.6); gain.gain.setValueAtTime(0, t0 + 1);
    };
    audio.resume().catch(() => {});
    burst();
    ring = { gain, timer: setInterval(burst, 3000) };
    document.body.dataset.ring = audio.state; // 'running' once the tone is audible
  }
  function stopRing() {
    if (!ring) return;
    clearInterval(ring.timer);
    ring.gain.disconnect();
    ring = null;
    delete document.body.dataset.ring;
  }

  // ---- devices: pickers filled from RCRTC.device; labels appear once the page may capture ----
  async function refreshDevices() {
    const fill = (select, list) => {
      const keep = select.value;
      select.replaceChildren(new Option('default', ''),
        ...list.filter((d) => d.deviceId && d.deviceId !== 'default').map((d, i) => new Option(d.label || `${d.kind} ${i + 1}`, d.deviceId)));
      if ([...select.options].some((o) => o.value === keep)) select.value = keep;
    };
    try {
      fill(ui.micSelect, await RCRTC.device.getMicrophones());
      fill(ui.camSelect, await RCRTC.device.getCameras());
    } catch (e) { log(`Listing devices failed: ${e.message || e}`); }
  }
  navigator.mediaDevices?.addEventListener('devicechange', refreshDevices);

  // Constraints for call() / callInGroup() / accept(): the chosen microphone and camera.
  function constraints(video) {
    const c = {};
    if (ui.micSelect.value) c.audio = { micphoneId: ui.micSelect.value };
    if (video && ui.camSelect.value) {
      c.video = { cameraId: ui.camSelect.value, frameRate: RCCall.RCFrameRate.FPS_15, resolution: RCCall.RCResolution.W640_H480 };
    }
    return Object.keys(c).length ? c : undefined;
  }

  // ---- the session listener (CallLib requires every key) ----
  const listener = {
    onRinging: (sender) => { status(`${who(sender)} is ringing…`); syncMembers(); },
    onAccept: (sender, s) => {
      status(s.getConversationType() === GROUP ? `${who(sender)} joined group call ${s.getTargetId()}` : `In call with ${who(sender)}`);
      setState('connected');
      syncMembers();
    },
    onHungup: (sender, reason) => { log(`${who(sender)} left: ${reasonText(reason)}`); syncMembers(); },
    onTrackReady: (track) => {
      const userId = track.getUserId();
      if (track.isLocalTrack()) {
        if (track.isVideoTrack()) track.play(tile(me).video); // never play local audio (echo)
        refreshDevices(); // capture allowed now: device labels are known
        return;
      }
      if (track.isAudioTrack()) track.play(); // remote audio: the SDK plays it
      else track.play(tile(userId).video);
      log(`${track.isAudioTrack() ? 'audio' : 'video'} from ${userId}`);
    },
    onMemberModify: (sender, invited) => { log(`${who(sender)} invited ${invited.map(who).join(', ')}`); syncMembers(); },
    onMediaModify: (sender, mediaType) => {
      log(`${who(sender)} switched the call to ${mediaType === Media.AUDIO ? 'audio only' : 'video'}`);
      setState(state);
    },
    onAudioMuteChange: (u) => { mark(u.userId, 'mic-muted', u.muted); log(`${who(u)} ${u.muted ? 'muted' : 'unmuted'} the microphone`); },
    onVideoMuteChange: (u) => { mark(u.userId, 'cam-off', u.muted); log(`${who(u)} turned the camera ${u.muted ? 'off' : 'on'}`); },
    onRTCStateReport: showStats,
  };

  // ---- login: token → init → installPlugin(RCRTC) → installPlugin(RCCall) → connect ----
  ui.loginForm.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const userId = ui.userId.value.trim();
    if (!userId) return;
    ui.loginBtn.disabled = true;
    audio = audio || new AudioContext(); // created in a click, so the ring tone may play later
    try {
      status(`Getting a token for ${userId}…`);
      const resp = await fetch(`/dev/token?userId=${encodeURIComponent(userId)}`);
      const body = await resp.json().catch(() => ({}));
      if (!resp.ok || body.code !== 200) throw new Error(`GET /dev/token → HTTP ${resp.status} ${JSON.stringify(body)} (is the server running with --dev?)`);
      if (!caller) {
        RongIMLib.init({ appkey: ui.appKey.value.trim() });
        const rtcClient = RongIMLib.installPlugin(RCRTC.installer, {});
        caller = RongIMLib.installPlugin(RCCall.installer, { rtcClient, onSession, onSessionClose });
      }
      const res = await RongIMLib.connect(body.token);
      if (res.code !== 0) throw new Error(`RongIMLib.connect → code ${res.code}`);
      me = res.data.userId;
      ui.me.textContent = `Logged in as ${me}.`;
      ui.userId.disabled = true;
      status(`Connected as ${me}. Enter a callee id and call.`);
      setState('idle');
      refreshDevices();
    } catch (e) {
      status(`Login failed: ${e.message || e}`);
      ui.loginBtn.disabled = false;
    }
  });

  function onSession(s, extra) {
    session = s;
    s.registerSessionListener(listener);
    const kind = s.getMediaType() === Media.AUDIO ? 'audio' : 'video';
    const group = s.getConversationType() === GROUP;
    const others = s.getRemoteUsers().map((u) => u.userId).filter((u) => u !== s.getCallerId());
    const text = `Incoming ${group ? 'group ' : ''}${kind} call from ${s.getCallerId()}` +
      (group ? ` in ${s.getTargetId()}${others.length ? ' with ' + others.join(', ') : ''}` : '') + (extra ? ` (${extra})` : '');
    ui.incomingText.textContent = text;
    status(text);
    setState('incoming');
  }

  function onSessionClose(s, summary) {
    if (s !== session) return;
    const secs = summary && summary.duration ? ` after ${Math.round(summary.duration / 1000)} s` : '';
    status(`Call ended: ${reasonText(summary && summary.endReason)}${secs}`);
    session = null;
    clearTiles();
    setState('idle');
  }

  // Group calls reach group members only: the dev server adds them (a real app's backend would).
  async function joinGroup(groupId, userIds) {
    const body = new URLSearchParams({ groupId });
    for (const u of userIds) body.append('userId', u);
    const resp = await fetch('/dev/group', { method: 'POST', body });
    const json = await resp.json().catch(() => ({}));
    if (json.code !== 200) throw new Error(`POST /dev/group → HTTP ${resp.status} ${JSON.stringify(json)}`);
  }

  async function startCall(mediaType) {
    const targets = ids(ui.targetId.value);
    const group = ui.group.checked;
    if (!targets.length) return status('Enter the callee user id first.');
    if (!group && targets.length > 1) return status('A 1:1 call has one callee: tick "Group call" to call several.');
    setState('outgoing');
    try {
      const params = { mediaType, listener, constraints: constraints(mediaType === Media.AUDIO_VIDEO) };
      let res;
      if (group) {
        const groupId = ui.groupId.value.trim() || `group-${Math.random().toString(36).slice(2, 8)}`;
        ui.groupId.value = groupId;
        await joinGroup(groupId, [me, ...targets]);
        status(`Calling group ${groupId}: ${targets.join(', ')}…`);
        res = await caller.callInGroup({ ...params, targetId: groupId, userIds: targets });
      } else {
        status(`Calling ${targets[0]}…`);
        res = await caller.call({ ...params, targetId: targets[0] });
      }
      if (res.code !== Code.SUCCESS) {
        status(`Call failed: code ${res.code}`);
        return setState('idle');
      }
      session = res.session;
      setState('outgoing');
      syncMembers();
    } catch (e) {
      status(`Call failed: ${e.message || e}`);
      setState('idle');
    }
  }
  ui.audioCall.addEventListener('click', () => startCall(Media.AUDIO));
  ui.videoCall.addEventListener('click', () => startCall(Media.AUDIO_VIDEO));

  // Runs a session method from a button; logs a failure code.
  async function act(name, what, ...args) {
    if (!session) return false;
    const res = await session[name](...args);
    if (res.code !== Code.SUCCESS) log(`${what} failed: code ${res.code}`);
    return res.code === Code.SUCCESS;
  }

  ui.accept.addEventListener('click', async () => {
    ui.accept.disabled = ui.reject.disabled = ui.incoming.hidden = true;
    stopRing();
    if (await act('accept', 'Accept', constraints(session.getMediaType() === Media.AUDIO_VIDEO))) {
      status(session.getConversationType() === GROUP ? `In group call ${session.getTargetId()}` : `In call with ${session.getTargetId()}`);
      setState('connected');
      syncMembers();
    }
  });
  ui.reject.addEventListener('click', () => act('hungup', 'Reject'));
  ui.hangup.addEventListener('click', () => act('hungup', 'Hang up'));

  ui.toggleMic.addEventListener('click', async () => {
    const muting = !micMuted;
    if (!(await act(muting ? 'disableAudioTrack' : 'enableAudioTrack', 'Mute'))) return;
    micMuted = muting;
    ui.toggleMic.textContent = muting ? 'Unmute' : 'Mute';
    mark(me, 'mic-muted', muting);
  });
  ui.toggleCam.addEventListener('click', async () => {
    const off = !camOff;
    if (!(await act(off ? 'disableVideoTrack' : 'enableVideoTrack', 'Camera'))) return;
    camOff = off;
    ui.toggleCam.textContent = off ? 'Camera on' : 'Camera off';
    mark(me, 'cam-off', off);
  });
  ui.downgrade.addEventListener('click', async () => {
    if (await act('descendAbility', 'Switch to audio')) { log('Switched the call to audio only'); setState(state); }
  });
  ui.invite.addEventListener('click', async () => {
    const invitees = ids(ui.inviteId.value);
    if (!invitees.length || !session) return;
    try {
      await joinGroup(session.getTargetId(), invitees);
      if (await act('invite', 'Invite', invitees)) { log(`Invited ${invitees.join(', ')}`); ui.inviteId.value = ''; syncMembers(); }
    } catch (e) { log(`Invite failed: ${e.message || e}`); }
  });
  // A microphone change applies at once (changeAudioDevice); a camera change, to the next call.
  ui.micSelect.addEventListener('change', async () => {
    if (session && (state === 'outgoing' || state === 'connected')) {
      const mic = ui.micSelect.value ? { micphoneId: ui.micSelect.value } : undefined;
      if (await act('changeAudioDevice', 'Microphone change', mic)) log(`Microphone: ${ui.micSelect.selectedOptions[0].text}`);
    }
  });
  ui.showStats.addEventListener('change', () => ui.tiles.classList.toggle('show-stats', ui.showStats.checked));

  ui.status.textContent = 'Not logged in.';
  setState('idle');
})();
