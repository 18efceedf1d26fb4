// rcall demo app: the RongCloud CallLib 5.X QuickDemo flow, without a framework or bundler.
// The token comes from the demo server's GET /dev/token (only enabled with `rcall-server --dev`);
// a real app gets it from its own backend, which calls POST /user/getToken.json.
(function () {
  'use strict';

  var $ = function (id) { return document.getElementById(id); };
  var ui = {
    loginForm: $('login-form'), userId: $('user-id'), appKey: $('app-key'), loginBtn: $('login-btn'), me: $('me'),
    targetId: $('target-id'), audioCall: $('audio-call'), videoCall: $('video-call'), accept: $('accept'), hangup: $('hangup'),
    status: $('status'), log: $('log'), localVideo: $('local-video'), remoteVideo: $('remote-video'), remoteLabel: $('remote-label'),
  };

  var END_REASONS = {
    1: 'you cancelled', 2: 'you rejected', 3: 'you hung up', 4: 'you were busy', 5: 'you did not answer',
    7: 'network error', 8: 'could not open camera/microphone', 9: 'publish failed', 10: 'subscribe failed',
    11: 'the caller cancelled', 12: 'the callee rejected', 13: 'the other side hung up', 14: 'the other side is busy',
    15: 'no answer', 17: 'remote network error', 18: 'remote could not open camera/microphone',
    101: 'answered on another device', 102: 'hung up on another device',
  };
  var reasonText = function (r) { return (END_REASONS[r] || 'reason') + ' (' + r + ')'; };

  var caller = null;   // RCCallClient
  var session = null;  // the current RCCallSession
  var me = null;

  var params = new URLSearchParams(location.search);
  if (params.get('appkey')) ui.appKey.value = params.get('appkey');
  if (params.get('user')) ui.userId.value = params.get('user');
  if (params.get('target')) ui.targetId.value = params.get('target');

  function log(text) {
    var li = document.createElement('li');
    li.textContent = new Date().toLocaleTimeString() + '  ' + text;
    ui.log.insertBefore(li, ui.log.firstChild);
  }
  function status(text) { ui.status.textContent = text; log(text); }

  // idle | outgoing | incoming | connected
  function setState(state) {
    var loggedIn = !!caller;
    ui.audioCall.disabled = ui.videoCall.disabled = !loggedIn || state !== 'idle';
    ui.accept.disabled = state !== 'incoming';
    ui.hangup.disabled = state === 'idle';
  }

  function clearVideos() {
    ui.localVideo.srcObject = null;
    ui.remoteVideo.srcObject = null;
    ui.remoteLabel.textContent = 'Remote';
  }

  // ---- the session listener (every key is required by CallLib) ----
  var listener = {
    onRinging: function (sender) { status((sender.userId) + ' is ringing…'); },
    onAccept: function (sender) { status('In call with ' + sender.userId); setState('connected'); },
    onHungup: function (sender, reason) { log(sender.userId + ' hung up: ' + reasonText(reason)); },
    onTrackReady: function (track) {
      if (track.isLocalTrack()) {
        if (track.isVideoTrack()) track.play(ui.localVideo); // never play local audio (echo)
        return;
      }
      if (track.isAudioTrack()) {
        track.play(); // remote audio: the SDK plays it
      } else {
        ui.remoteLabel.textContent = track.getUserId();
        track.play(ui.remoteVideo);
      }
      log('remote ' + (track.isAudioTrack() ? 'audio' : 'video') + ' from ' + track.getUserId());
    },
    onMemberModify: function () {},
    onMediaModify: function (sender, mediaType) { log(sender.userId + ' switched to ' + (mediaType === 1 ? 'audio only' : 'video')); },
    onAudioMuteChange: function (u) { log(u.userId + (u.muted ? ' muted' : ' unmuted') + ' audio'); },
    onVideoMuteChange: function (u) { log(u.userId + (u.muted ? ' turned off' : ' turned on') + ' video'); },
  };

  // ---- login: token → init → installPlugin(RCRTC) → installPlugin(RCCall) → connect ----
  ui.loginForm.addEventListener('submit', async function (ev) {
    ev.preventDefault();
    var userId = ui.userId.value.trim();
    if (!userId) return;
    ui.loginBtn.disabled = true;
    try {
      status('Getting a token for ' + userId + '…');
      var resp = await fetch('/dev/token?userId=' + encodeURIComponent(userId));
      var body = await resp.json().catch(function () { return {}; });
      if (!resp.ok || body.code !== 200) throw new Error('GET /dev/token → HTTP ' + resp.status + ' ' + JSON.stringify(body) + ' (is the server running with --dev?)');

      if (!caller) {
        RongIMLib.init({ appkey: ui.appKey.value.trim() });
        var rtcClient = RongIMLib.installPlugin(RCRTC.installer, {});
        caller = RongIMLib.installPlugin(RCCall.installer, {
          rtcClient: rtcClient,
          onSession: function (s, extra) {
            session = s;
            s.registerSessionListener(listener);
            var kind = s.getMediaType() === RCCall.RCCallMediaType.AUDIO ? 'audio' : 'video';
            ui.targetId.value = s.getCallerId();
            status('Incoming ' + kind + ' call from ' + s.getCallerId() + (extra ? ' (' + extra + ')' : ''));
            setState('incoming');
          },
          onSessionClose: function (s, summary) {
            var secs = summary && summary.duration ? ' after ' + Math.round(summary.duration / 1000) + ' s' : '';
            status('Call ended: ' + reasonText(summary && summary.endReason) + secs);
            session = null;
            clearVideos();
            setState('idle');
          },
        });
      }
      var res = await RongIMLib.connect(body.token);
      if (res.code !== 0) throw new Error('RongIMLib.connect → code ' + res.code);
      me = res.data.userId;
      ui.me.textContent = 'Logged in as ' + me + '.';
      ui.userId.disabled = true;
      status('Connected as ' + me + '. Enter a callee id and call.');
      setState('idle');
    } catch (e) {
      status('Login failed: ' + (e && e.message || e));
      ui.loginBtn.disabled = false;
    }
  });

  async function startCall(mediaType) {
    var targetId = ui.targetId.value.trim();
    if (!targetId) { status('Enter the callee user id first.'); return; }
    setState('outgoing');
    status('Calling ' + targetId + '…');
    try {
      var res = await caller.call({ targetId: targetId, mediaType: mediaType, listener: listener });
      if (res.code !== RCCall.RCCallErrorCode.SUCCESS) {
        status('Call failed: code ' + res.code);
        setState('idle');
        return;
      }
      session = res.session;
    } catch (e) {
      status('Call failed: ' + (e && e.message || e));
      setState('idle');
    }
  }
  ui.audioCall.addEventListener('click', function () { startCall(RCCall.RCCallMediaType.AUDIO); });
  ui.videoCall.addEventListener('click', function () { startCall(RCCall.RCCallMediaType.AUDIO_VIDEO); });

  ui.accept.addEventListener('click', async function () {
    if (!session) return;
    ui.accept.disabled = true;
    var res = await session.accept();
    if (res.code === RCCall.RCCallErrorCode.SUCCESS) { status('In call with ' + session.getTargetId()); setState('connected'); }
    else status('Accept failed: code ' + res.code);
  });

  ui.hangup.addEventListener('click', async function () {
    if (!session) return;
    var res = await session.hungup();
    if (res.code !== RCCall.RCCallErrorCode.SUCCESS) log('hungup → code ' + res.code);
  });

  if (typeof RongIMLib === 'undefined' || typeof RCCall === 'undefined') {
    status('The SDK did not load from /sdk/rcall.js (run `bash npm/build.sh`).');
    ui.loginBtn.disabled = true;
  } else {
    ui.status.textContent = 'Not logged in.';
  }
  setState('idle');
})();
