// The rcall side of the benchmark: a CallLib 5.X app reduced to what run.mjs drives.
(function () {
  'use strict';
  var C = window.BenchCommon;
  var now = C.now;
  var B = (window.B = { C: C, session: null, reports: [], collectReports: false, ice: [] });
  var CONSTRAINTS = { video: { frameRate: 'FPS_15', resolution: 'W640_H480' } };

  function sid(s) { try { return s.getSessionId(); } catch (e) { return undefined; } }

  function listener() {
    return {
      onRinging: function (sender) { C.log('onRinging', { userId: sender && sender.userId }); },
      onAccept: function (sender) { C.log('onAccept', { userId: sender && sender.userId }); },
      onHungup: function (sender, reason) { C.log('onHungup', { userId: sender && sender.userId, reason: reason }); },
      onTrackReady: function (track) {
        var local = track.isLocalTrack();
        var kind = track.isAudioTrack() ? 'audio' : 'video';
        var userId = track.getUserId();
        C.log('onTrackReady', { local: local, kind: kind, userId: userId });
        if (kind === 'audio') {
          if (!local && B.playAudio !== false) track.play();
          return;
        }
        var v = C.videoFor((local ? 'local-' : 'remote-') + userId, userId, local);
        track.play(v.el);
      },
      onMemberModify: function () {},
      onMediaModify: function () {},
      onAudioMuteChange: function () {},
      onVideoMuteChange: function () {},
      onICEConnectionStateChange: function (state) { B.ice.push({ t: now(), state: state }); },
      onRTCStateReport: function (report) {
        if (B.collectReports) B.reports.push({ t: now(), report: JSON.parse(JSON.stringify(report)) });
      },
    };
  }

  B.setup = function (appkey, navi) {
    var opts = { appkey: appkey };
    if (navi) opts.navi = navi;
    RongIMLib.init(opts);
    var rtcClient = RongIMLib.installPlugin(RCRTC.installer, {});
    B.caller = RongIMLib.installPlugin(RCCall.installer, {
      rtcClient: rtcClient,
      onSession: function (session) {
        B.session = session;
        C.log('onSession', { sessionId: sid(session), callerId: session.getCallerId() });
        session.registerSessionListener(listener());
      },
      onSessionClose: function (session, summary) {
        C.log('onSessionClose', { endReason: summary && summary.endReason, sessionId: sid(session) });
      },
    });
  };

  B.connect = async function (token) {
    var res = await RongIMLib.connect(token);
    return { code: res.code, userId: res.data && res.data.userId };
  };

  B.call = async function (targetId) {
    var t0 = now();
    C.log('call', { targetId: targetId });
    var res = await B.caller.call({ targetId: targetId, mediaType: 2, listener: listener(), constraints: CONSTRAINTS });
    if (res.session) B.session = res.session;
    return { code: res.code, t0: t0, t1: now() };
  };

  // mediaType: 1 audio, 2 audio+video (default).
  B.callInGroup = async function (groupId, userIds, mediaType) {
    var t0 = now();
    var res = await B.caller.callInGroup({ targetId: groupId, userIds: userIds, mediaType: mediaType || 2, listener: listener(), constraints: CONSTRAINTS });
    if (res.session) B.session = res.session;
    return { code: res.code, t0: t0, t1: now() };
  };

  B.accept = async function () {
    var t0 = now();
    C.log('accept');
    var res = await B.session.accept(CONSTRAINTS);
    return { code: res.code, t0: t0, t1: now() };
  };

  B.hungup = async function () {
    if (!B.session) return { code: null };
    var res = await B.session.hungup();
    return { code: res.code };
  };

  B.reset = function () { C.reset(); B.reports = []; B.ice = []; };
  B.ready = true;
})();
