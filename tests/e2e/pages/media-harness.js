// e2e media harness (tests/e2e/media.test.mjs): a CallLib 5.X app reduced to functions the tests
// call through page.evaluate, with the media parts exposed: device lists, onRTCStateReport,
// onICEConnectionStateChange, changeAudioDevice, accept() constraints, track.play() results, and the
// getUserMedia calls the SDK made (media-pre.js). Same `H` surface as harness.js where the shared
// Client helper (helpers.mjs) needs it: H.ready, H.events, H.setup, H.connect, H.videoState,
// H.rtcStats, H.errors. Events are {t, type, ...}, t = performance.timeOrigin + performance.now().
(function () {
  'use strict';
  var now = function () { return performance.timeOrigin + performance.now(); };
  var MAX_REPORTS = 400;

  var H = (window.H = {
    sdk: { loadError: window.__sdkLoadError || null, RongIMLib: typeof window.RongIMLib, RCRTC: typeof window.RCRTC, RCCall: typeof window.RCCall },
    events: [],
    reports: [], // {t, pcName, report} from onRTCStateReport (JSON copies)
    session: null,
    caller: null,
    videos: {},
    tracks: [], // {info, track}
  });

  function log(type, data) {
    var ev = Object.assign({ t: now(), type: type }, data || {});
    H.events.push(ev);
    return ev;
  }
  function errText(e) { return String((e && (e.stack || e.message)) || e); }
  function sid(s) { try { return s.getSessionId(); } catch (e) { return undefined; } }

  // Video elements, H.videoState and H.rtcStats (raw WebRTC stats): harness-common.js.
  var videoFor = window.harnessCommon(H, now);

  H.errors = function () { return window.__errors.slice(); };
  H.gumCalls = function () { return window.__gum.slice(); };

  function trackInfo(track, session) {
    var mst = track.getMediaStreamTrack();
    return {
      local: track.isLocalTrack(),
      kind: track.isAudioTrack() ? 'audio' : track.isVideoTrack() ? 'video' : 'unknown',
      userId: track.getUserId(),
      trackId: track.getTrackId(),
      mstId: mst ? mst.id : null,
      mstLabel: mst ? mst.label : null,
      deviceId: mst && mst.getSettings ? mst.getSettings().deviceId : null,
      readyState: mst ? mst.readyState : null,
      sessionId: sid(session),
    };
  }

  function makeListener(tag) {
    return {
      onRinging: function (sender, session) { log('onRinging', { userId: sender && sender.userId, tag: tag, sessionId: sid(session) }); },
      onAccept: function (sender, session) { log('onAccept', { userId: sender && sender.userId, tag: tag, sessionId: sid(session) }); },
      onHungup: function (sender, reason, session) { log('onHungup', { userId: sender && sender.userId, reason: reason, tag: tag, sessionId: sid(session) }); },
      onTrackReady: function (track, session) {
        var info;
        try { info = trackInfo(track, session); } catch (e) { log('onTrackReady', { error: errText(e) }); return; }
        H.tracks.push({ info: info, track: track });
        log('onTrackReady', info);
        // Play like QuickDemo (never local audio).
        var played;
        if (info.kind === 'video') {
          played = track.play(videoFor((info.local ? 'local-' : 'remote-') + info.userId, info.userId, info.local).el);
        } else if (!info.local) {
          played = track.play();
        } else {
          return;
        }
        Promise.resolve(played).then(
          function (res) { log('play', Object.assign({}, info, { code: res && res.code })); },
          function (e) { log('play', Object.assign({}, info, { rejected: errText(e) })); }
        );
      },
      onMemberModify: function () {},
      onMediaModify: function () {},
      onAudioMuteChange: function () {},
      onVideoMuteChange: function () {},
      onICEConnectionStateChange: function (state, session) { log('onICEConnectionStateChange', { state: state, sessionId: sid(session) }); },
      onRTCStateReport: function (report, session) {
        var copy;
        try { copy = JSON.parse(JSON.stringify(report)); } catch (e) { copy = { error: errText(e) }; }
        H.reports.push({ t: now(), pcName: report && report.pcName, sessionId: sid(session), report: copy });
        if (H.reports.length > MAX_REPORTS) H.reports.shift();
      },
    };
  }

  H.setup = function (opts) {
    if (H.sdk.loadError || H.sdk.RongIMLib !== 'object') throw new Error('SDK globals missing: ' + JSON.stringify(H.sdk));
    var initOpts = { appkey: opts.appkey };
    if (opts.navi) initOpts.navi = opts.navi;
    RongIMLib.init(initOpts);
    var rtcClient = RongIMLib.installPlugin(RCRTC.installer, {});
    H.caller = RongIMLib.installPlugin(RCCall.installer, {
      rtcClient: rtcClient,
      onSession: function (session) {
        H.session = session;
        log('onSession', { sessionId: sid(session), callerId: session.getCallerId(), mediaType: session.getMediaType() });
        session.registerSessionListener(makeListener('incoming'));
      },
      onSessionClose: function (session, summary) {
        log('onSessionClose', { sessionId: sid(session), summary: summary ? { endReason: summary.endReason, duration: summary.duration, mediaType: summary.mediaType } : summary });
      },
    });
    return { ok: true };
  };

  H.connect = async function (token) {
    var t0 = now();
    var res = await RongIMLib.connect(token);
    var out = { code: res && res.code, userId: res && res.data && res.data.userId, ms: now() - t0, t0: t0 };
    log('connect', out);
    return out;
  };

  H.call = async function (targetId, mediaType) {
    var t0 = now();
    log('call', { targetId: targetId, mediaType: mediaType });
    var res = await H.caller.call({ targetId: targetId, mediaType: mediaType, listener: makeListener('outgoing') });
    if (res && res.session) H.session = res.session;
    var out = { code: res && res.code, hasSession: !!(res && res.session), t0: t0 };
    log('callResult', out);
    return out;
  };

  // Runs session[method](...args); a synchronous throw or a rejection is returned as {threw}.
  async function sessionCall(method, args) {
    var t0 = now();
    log(method, { args: args });
    try {
      var res = await H.session[method].apply(H.session, args);
      var out = { code: res && res.code, t0: t0, ms: now() - t0 };
      log(method + 'Result', out);
      return out;
    } catch (e) {
      var o = { threw: String(e && e.message !== undefined ? e.message : e), isError: e instanceof Error, t0: t0 };
      log(method + 'Result', o);
      return o;
    }
  }

  H.accept = function (constraints) { return sessionCall('accept', constraints === undefined ? [] : [constraints]); };
  H.hungup = function () { return sessionCall('hungup', []); };
  H.changeAudioDevice = function (c) { return sessionCall('changeAudioDevice', [c]); };

  H.devices = async function () {
    var out = {};
    for (var m of ['getCameras', 'getMicrophones', 'getSpeakers']) {
      try { out[m] = await RCRTC.device[m](); } catch (e) { out[m] = { threw: errText(e) }; }
    }
    return JSON.parse(JSON.stringify(out));
  };

  // track.play() with no element on the first remote track of `kind`.
  H.playWithoutElement = async function (kind) {
    var t = H.tracks.find(function (x) { return !x.info.local && x.info.kind === kind; });
    if (!t) throw new Error('no remote ' + kind + ' track yet');
    try {
      var res = await t.track.play();
      return { code: res && res.code };
    } catch (e) {
      return { threw: errText(e) };
    }
  };

  H.trackStates = function () {
    return H.tracks.map(function (t) {
      var mst = t.track.getMediaStreamTrack();
      return Object.assign({}, t.info, { readyState: mst ? mst.readyState : null, enabled: mst ? mst.enabled : null });
    });
  };

  H.ready = true;
})();
