// e2e harness: a CallLib 5.X app reduced to functions the tests call through page.evaluate.
// Every SDK callback is recorded in H.events as {t, type, ...}, t = performance.timeOrigin +
// performance.now() (wall-clock ms, comparable across pages and browser processes).
(function () {
  'use strict';
  var now = function () { return performance.timeOrigin + performance.now(); };
  var params = new URLSearchParams(location.search);

  var H = (window.H = {
    // Did the one classic <script src=".../sdk/rcall.js"> define the globals synchronously?
    sdk: {
      loadError: window.__sdkLoadError || null,
      RongIMLib: typeof window.RongIMLib,
      RCRTC: typeof window.RCRTC,
      RCCall: typeof window.RCCall,
    },
    navi: params.get('navi') || undefined,
    events: [],
    session: null, // the current session (outgoing from call(), or incoming from onSession)
    caller: null,
    rtcClient: null,
    videos: {}, // key -> {el, userId, local, frames, firstFrameAt, firstWidth}
    sessions: {}, // every session this page saw (from call()/callInGroup() or onSession), by the id it had then
    tracks: [], // every RCTrack handed to onTrackReady, in order: {info, track}
    reports: [], // {t, pcName, sessionId, report} from onRTCStateReport (JSON copies, the last 400)
  });

  function log(type, data) {
    var ev = Object.assign({ t: now(), type: type }, data || {});
    H.events.push(ev);
    return ev;
  }
  H.log = log;

  function errText(e) {
    return String((e && (e.stack || e.message)) || e);
  }

  function senderInfo(s) {
    if (!s || typeof s !== 'object') return { sender: s };
    return { userId: s.userId, name: s.name, portraitUri: s.portraitUri, extra: s.extra };
  }

  function sessionInfo(session) {
    if (!session) return null;
    var out = {};
    ['getSessionId', 'getTargetId', 'getConversationType', 'getChannelId', 'getMediaType', 'getCallerId', 'getState'].forEach(function (m) {
      try {
        out[m.slice(3, 4).toLowerCase() + m.slice(4)] = typeof session[m] === 'function' ? session[m]() : '(missing)';
      } catch (e) {
        out[m] = 'threw: ' + errText(e);
      }
    });
    return out;
  }

  function sidOf(session) {
    try {
      return session && typeof session.getSessionId === 'function' ? session.getSessionId() : undefined;
    } catch (e) {
      return undefined;
    }
  }

  function remember(session) {
    var id = sidOf(session);
    if (id) H.sessions[id] = session;
  }

  // The session a command targets: by id (looked up by each object's CURRENT id, which changes
  // when crossing calls merge), else H.session.
  function sessionFor(id) {
    if (!id) return H.session;
    if (H.sessions[id]) return H.sessions[id];
    var keys = Object.keys(H.sessions);
    for (var i = 0; i < keys.length; i++) {
      if (sidOf(H.sessions[keys[i]]) === id) return H.sessions[keys[i]];
    }
    throw new Error('no session with id ' + id + ' (known: ' + keys.join(', ') + ')');
  }

  function isLive(session) {
    try {
      return !!session && session.getState() !== 2;
    } catch (e) {
      return false;
    }
  }

  function plainSummary(s) {
    if (!s || typeof s !== 'object') return s;
    var keys = ['conversationType', 'channelId', 'targetId', 'mediaType', 'beginTimestamp', 'endTimestamp', 'duration', 'endReason'];
    var out = {};
    keys.forEach(function (k) { out[k] = s[k]; });
    return out;
  }

  // ---- video elements fed by track.play(el), H.videoState and H.rtcStats: harness-common.js ----
  var videoFor = window.harnessCommon(H, now, function (v, key) {
    log('firstFrame', { key: key, userId: v.userId, local: v.local, width: v.el.videoWidth, height: v.el.videoHeight });
  });

  // ---- the CallLib session listener: records everything, plays tracks like QuickDemo ----
  function makeListener(tag) {
    return {
      onRinging: function (sender, session) { log('onRinging', Object.assign(senderInfo(sender), { tag: tag, sessionId: sidOf(session) })); },
      onAccept: function (sender, session) { log('onAccept', Object.assign(senderInfo(sender), { tag: tag, sessionId: sidOf(session) })); },
      onHungup: function (sender, reason, session) { log('onHungup', Object.assign(senderInfo(sender), { reason: reason, tag: tag, sessionId: sidOf(session) })); },
      onTrackReady: function (track, session) {
        var info;
        try {
          info = {
            local: track.isLocalTrack(),
            kind: track.isAudioTrack() ? 'audio' : track.isVideoTrack() ? 'video' : 'unknown',
            userId: track.getUserId(),
            trackId: track.getTrackId(),
            withSession: !!session,
            sessionId: sidOf(session),
          };
          var mst = typeof track.getMediaStreamTrack === 'function' ? track.getMediaStreamTrack() : null;
          info.mstId = mst ? mst.id : null;
          info.readyState = mst ? mst.readyState : null;
        } catch (e) {
          log('onTrackReady', { error: errText(e) });
          return;
        }
        H.tracks.push({ info: info, track: track });
        log('onTrackReady', info);
        var played;
        try {
          if (info.kind === 'video') {
            var v = videoFor((info.local ? 'local-' : 'remote-') + info.userId, info.userId, info.local);
            played = track.play(v.el);
          } else if (info.kind === 'audio' && !info.local) {
            played = track.play(); // remote audio: the SDK plays it with an internal element
          } else {
            return; // local audio is never played (echo)
          }
        } catch (e) {
          log('play', Object.assign({}, info, { threw: errText(e) }));
          return;
        }
        Promise.resolve(played).then(
          function (res) { log('play', Object.assign({}, info, { code: res && res.code })); },
          function (e) { log('play', Object.assign({}, info, { rejected: errText(e) })); }
        );
      },
      onMemberModify: function (sender, invitedUsers, session) {
        var invited = Array.isArray(invitedUsers) ? invitedUsers.map(function (u) { return Object.assign({}, u); }) : invitedUsers;
        log('onMemberModify', { userId: sender && sender.userId, invited: invited, sessionId: sidOf(session) });
      },
      onMediaModify: function (sender, mediaType, session) { log('onMediaModify', { userId: sender && sender.userId, mediaType: mediaType, sessionId: sidOf(session) }); },
      onAudioMuteChange: function (muteUser, session) { log('onAudioMuteChange', Object.assign({}, muteUser, { sessionId: sidOf(session) })); },
      onVideoMuteChange: function (muteUser, session) { log('onVideoMuteChange', Object.assign({}, muteUser, { sessionId: sidOf(session) })); },
      onTrackPublishFail: function (code, session) { log('onTrackPublishFail', { code: code, sessionId: sidOf(session) }); },
      onTrackSubscribeFail: function (code, session) { log('onTrackSubscribeFail', { code: code, sessionId: sidOf(session) }); },
      onICEConnectionStateChange: function (state) { log('onICEConnectionStateChange', { state: state }); },
      // Kept apart from H.events (one per connection a second would crowd them out).
      onRTCStateReport: function (report, session) {
        var copy;
        try { copy = JSON.parse(JSON.stringify(report)); } catch (e) { copy = { error: errText(e) }; }
        H.reports.push({ t: now(), pcName: report && report.pcName, sessionId: sidOf(session), report: copy });
        if (H.reports.length > 400) H.reports.shift();
      },
    };
  }

  // ---- the API the tests drive ----
  H.setup = function (opts) {
    if (H.sdk.loadError || H.sdk.RongIMLib !== 'object' || H.sdk.RCRTC !== 'object' || H.sdk.RCCall !== 'object') {
      throw new Error('SDK globals missing after <script src=".../sdk/rcall.js">: ' + JSON.stringify(H.sdk));
    }
    var initOpts = { appkey: opts.appkey };
    if (opts.navi || H.navi) initOpts.navi = opts.navi || H.navi;
    RongIMLib.init(initOpts);
    // IMLib 5 connection events, logged as 'im:<EVENT>' with the code they carry.
    ['CONNECTING', 'CONNECTED', 'DISCONNECT', 'SUSPEND'].forEach(function (name) {
      RongIMLib.addEventListener(RongIMLib.Events[name], function (code) {
        log('im:' + name, { code: code, status: RongIMLib.getConnectionStatus() });
      });
    });
    H.rtcClient = RongIMLib.installPlugin(RCRTC.installer, opts.rtcOptions || {});
    H.caller = RongIMLib.installPlugin(RCCall.installer, H.callInstallOptions(opts));
    if (!H.rtcClient) throw new Error('installPlugin(RCRTC.installer) returned ' + H.rtcClient);
    if (!H.caller) throw new Error('installPlugin(RCCall.installer) returned ' + H.caller);
    return { ok: true, navi: initOpts.navi || null };
  };

  // The RCCall install options of this harness (also used by the IMLib 4.X/2.X pages).
  H.callInstallOptions = function (opts) {
    return Object.assign({}, opts.callOptions || {}, {
      rtcClient: H.rtcClient,
      onSession: function (session, extra) {
        // H.session is "the current session": a second incoming session (busy line) does not
        // replace one that is still live; H.sessions keeps them all.
        if (!isLive(H.session)) H.session = session;
        remember(session);
        log('onSession', Object.assign({ extra: extra }, sessionInfo(session)));
        session.registerSessionListener(makeListener('incoming'));
      },
      onOfflineRecord: function (record) {
        log('onOfflineRecord', JSON.parse(JSON.stringify(record)));
      },
      onSessionClose: function (session, summary) {
        log('onSessionClose', { summary: plainSummary(summary), sessionId: session && session.getSessionId && session.getSessionId() });
      },
    });
  };

  H.connect = async function (token) {
    var t0 = now();
    var res = await RongIMLib.connect(token);
    var t1 = now();
    var out = { code: res && res.code, userId: res && res.data && res.data.userId, ms: t1 - t0, t0: t0 };
    log('connect', out);
    return out;
  };

  async function startCall(method, params, logged) {
    var t0 = now();
    log(method === 'call' ? 'call' : method, logged);
    var res = await H.caller[method](Object.assign({ listener: makeListener('outgoing') }, params));
    var out = { code: res && res.code, hasSession: !!(res && res.session), t0: t0, ms: now() - t0 };
    if (res && res.session) {
      // A failed call() (e.g. 53200 during another call) has no session and keeps H.session.
      H.session = res.session;
      remember(res.session);
      out.session = sessionInfo(res.session);
    }
    log(method === 'call' ? 'callResult' : method + 'Result', out);
    return out;
  }

  H.call = function (targetId, mediaType) {
    return startCall('call', { targetId: targetId, mediaType: mediaType }, { targetId: targetId, mediaType: mediaType });
  };

  // call() with more params (pushTitle, pushContent, extra…).
  H.callWith = function (params) { return startCall('call', params, params); };

  // H.call at wall-clock time `at` (Date.now() ms, the same clock in every page and in node):
  // lets two pages dial within ~1 ms of each other, much closer than two page.evaluate calls.
  H.callAt = function (at, targetId, mediaType) {
    return new Promise(function (resolve) {
      (function wait() {
        var d = at - Date.now();
        if (d > 4) return setTimeout(wait, d - 3);
        while (Date.now() < at) { /* spin the last few ms */ }
        resolve(H.call(targetId, mediaType));
      })();
    });
  };

  H.callInGroup = function (groupId, userIds, mediaType) {
    return startCall('callInGroup', { targetId: groupId, userIds: userIds, mediaType: mediaType },
      { targetId: groupId, userIds: userIds, mediaType: mediaType });
  };

  // Runs session[method](...args) on H.session (or the session with id `sessionId`) and logs
  // `<method>` / `<method>Result` {code}.
  H.sessionCall = async function (method, args, sessionId) {
    var session = sessionFor(sessionId);
    if (!session) throw new Error('no session for ' + method);
    var t0 = now();
    log(method, { args: args || [], sessionId: sidOf(session) });
    var res = await session[method].apply(session, args || []);
    var out = { code: res && res.code, t0: t0, ms: now() - t0, sessionId: sidOf(session) };
    log(method + 'Result', out);
    return out;
  };

  H.accept = function (sessionId) { return H.sessionCall('accept', [], sessionId); };
  H.hungup = function (sessionId) { return H.sessionCall('hungup', [], sessionId); };

  H.sessionInfo = function (sessionId) { return sessionInfo(sessionId ? sessionFor(sessionId) : H.session); };

  // Every track onTrackReady handed out, with its MediaStreamTrack's current state.
  H.trackStates = function () {
    return H.tracks.map(function (t) {
      var mst = typeof t.track.getMediaStreamTrack === 'function' ? t.track.getMediaStreamTrack() : null;
      return Object.assign({}, t.info, {
        readyState: mst ? mst.readyState : null,
        enabled: mst ? mst.enabled : null,
        isReady: typeof t.track.isReady === 'function' ? t.track.isReady() : null,
      });
    });
  };
  H.errors = function () { return window.__errors.slice(); };
  H.ready = true;
})();
