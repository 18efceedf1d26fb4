// IMLib 4.X and 2.X app shapes on top of harness.js (seed: "CallLib 配合 IMLib 4.X / 2.X",
// "建立 IM 连接"): the same RCCall install options and listeners as the 5.X harness, reached
// through `RongIMLib.init()`'s IM client or `RongIMLib.RongIMClient`.
(function () {
  'use strict';
  var H = window.H;
  var log = H.log;
  var now = function () { return performance.timeOrigin + performance.now(); };

  function checkInstalled() {
    if (!H.rtcClient) throw new Error('install(RCRTC.installer) returned ' + H.rtcClient);
    if (!H.caller) throw new Error('install(RCCall.installer) returned ' + H.caller);
  }

  // 4.X: const imClient = init({appkey, navigators}); imClient.watch({status});
  // imClient.install(RCRTC.installer); imClient.install(RCCall.installer, {...}).
  H.setupV4 = function (opts) {
    var initOpts = { appkey: opts.appkey };
    if (opts.navi) initOpts.navigators = Array.isArray(opts.navi) ? opts.navi : [opts.navi];
    var imClient = RongIMLib.init(initOpts);
    if (!imClient || typeof imClient.install !== 'function') throw new Error('RongIMLib.init() returned ' + imClient);
    H.imClient = imClient;
    imClient.watch({
      status: function (evt) { log('v4:status', { status: evt && evt.status }); },
      message: function () { log('v4:message', {}); },
    });
    H.rtcClient = imClient.install(RCRTC.installer, opts.rtcOptions || {});
    H.caller = imClient.install(RCCall.installer, H.callInstallOptions(opts));
    checkInstalled();
    return { ok: true };
  };

  // imClient.connect({token}).then(user => user.id).catch(error => error.code, error.msg)
  H.connectV4 = async function (token) {
    var t0 = now();
    var out;
    try {
      var user = await H.imClient.connect(token === undefined ? {} : { token: token });
      out = { ok: true, id: user && user.id };
    } catch (e) {
      out = { ok: false, code: e && e.code, msg: e && e.msg, isError: e instanceof Error };
    }
    out.ms = now() - t0;
    log('connectV4', out);
    return out;
  };

  // 2.X: RongIMClient.init(appkey, null, {navi}); listeners; getInstance().install(...).
  H.setupV2 = function (opts) {
    var C = RongIMLib.RongIMClient;
    if (!C || typeof C.init !== 'function') throw new Error('RongIMLib.RongIMClient is ' + C);
    C.init(opts.appkey, null, opts.navi ? { navi: opts.navi } : undefined);
    C.setConnectionStatusListener({ onChanged: function (status) { log('v2:status', { status: status }); } });
    C.setOnReceiveMessageListener({ onReceived: function () { log('v2:message', {}); } });
    var imClient = C.getInstance();
    H.rtcClient = imClient.install(RCRTC.installer, opts.rtcOptions || {});
    H.caller = imClient.install(RCCall.installer, H.callInstallOptions(opts));
    checkInstalled();
    return { ok: true };
  };

  // RongIMClient.connect(token, {onSuccess(userId), onTokenIncorrect(), onError(code)}): resolves
  // with the first callback called; counts any later one (each must be called once at most).
  H.connectV2 = function (token) {
    var t0 = now();
    H.v2Callbacks = 0;
    return new Promise(function (resolve) {
      var done = function (out) {
        H.v2Callbacks++;
        out.ms = now() - t0;
        log('connectV2', out);
        resolve(out);
      };
      RongIMLib.RongIMClient.connect(token, {
        onSuccess: function (userId) { done({ cb: 'onSuccess', userId: userId, args: arguments.length }); },
        onTokenIncorrect: function () { done({ cb: 'onTokenIncorrect', args: arguments.length }); },
        onError: function (code) { done({ cb: 'onError', code: code, args: arguments.length }); },
      });
    });
  };

  H.legacyReady = true;
})();
