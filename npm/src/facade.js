// The JS face of rcall: defines RongIMLib, RCRTC and RCCall synchronously, before the wasm
// module has loaded, and forwards every call to the Rust exports once it has. Calls made early
// wait for the module and run in the order they were made. Behaviour lives in Rust; this file
// only bridges the load gap. Shared verbatim by the CDN script and the ESM package.
function createRcallGlobals(load, enums) {
  let wasm = null;
  const ready = load().then((m) => { wasm = m; return m; });
  ready.catch((e) => console.error('[rcall] failed to load the SDK module', e));
  // Runs f(wasm) now if loaded, else after loading, in call order.
  const later = (f) => (wasm ? Promise.resolve().then(() => f(wasm)) : ready.then(f));
  const now = (f) => { if (wasm) { f(wasm); } else { ready.then(f); } };

  const installed = {};
  // IMLib 2.X / 4.X ConnectionStatus (crates/sdk/src/connection.rs `legacy`).
  const legacyStatus = Object.freeze({
    CONNECTED: 0, CONNECTING: 1, DISCONNECTED: 2, NETWORK_UNAVAILABLE: 3, KICKED_OFFLINE_BY_OTHER_CLIENT: 6, BLOCKED: 9,
  });
  const RongIMLib = Object.assign({}, enums.RongIMLib, {
    // Returns the IMLib 4.X IM client (below) for 4.X apps; 5.X apps ignore the return value.
    init(options) { now((w) => w.im_init(options)); return imClient; },
    connect(token) { return later((w) => w.im_connect(token)); },
    disconnect() { return later((w) => w.im_disconnect()); },
    getCurrentUserId() { return wasm ? wasm.im_current_user_id() : undefined; },
    getConnectionStatus() { return wasm ? wasm.im_connection_status() : 2; },
    addEventListener(event, listener) { now((w) => w.im_add_event_listener(String(event), listener)); },
    removeEventListener(event, listener) { now((w) => w.im_remove_event_listener(String(event), listener)); },
    removeEventListeners(event) { now((w) => w.im_remove_event_listener(String(event), undefined)); },
    // installPlugin(installer, options): returns the plugin's API synchronously; installing a
    // tag twice returns the first instance, as IMLib does. Invalid options are reported when
    // the module has loaded (console error; the plugin's methods then reject).
    installPlugin(installer, options) {
      if (!installer || typeof installer.setup !== 'function') return null;
      if (installer.verify && !installer.verify()) return null;
      if (!installed[installer.tag]) installed[installer.tag] = installer.setup(options || {});
      return installed[installer.tag];
    },
  });

  // IMLib 4.X: `const imClient = RongIMLib.init({appkey})`. The status logic is in Rust
  // (crates/sdk/src/imlib_compat.rs); these only forward.
  const imClient = {
    install: (installer, options) => RongIMLib.installPlugin(installer, options),
    connect: (options) => later((w) => w.im4_connect(options)),
    disconnect: () => RongIMLib.disconnect(),
    watch(watcher) { now((w) => w.im4_watch(watcher)); },
    unwatch() { now((w) => w.im4_unwatch()); },
    getCurrentUserId: () => RongIMLib.getCurrentUserId(),
    getConnectionStatus: () => (wasm ? wasm.im_legacy_connection_status() : 2),
  };
  // IMLib 2.X: `RongIMLib.RongIMClient.init(appkey, dataAccessProvider, {navi})`, then the
  // static connect/listeners and `getInstance()` for install.
  const v2Instance = {
    install: imClient.install,
    disconnect() { RongIMLib.disconnect(); },
    logout() { RongIMLib.disconnect(); },
    getCurrentUserId: () => RongIMLib.getCurrentUserId(),
    getCurrentConnectionStatus: () => imClient.getConnectionStatus(),
  };
  RongIMLib.RongIMClient = {
    init(appkey, _dataAccessProvider, options) { RongIMLib.init(Object.assign({}, options, { appkey })); },
    getInstance: () => v2Instance,
    connect(token, callbacks) { later((w) => w.im2_connect(token, callbacks)); },
    setConnectionStatusListener(listener) { now((w) => w.im2_set_connection_status_listener(listener)); },
    // Non-call messages do not exist on rcall's link; the call plugin consumes call messages.
    setOnReceiveMessageListener() {},
  };
  RongIMLib.ConnectionStatus = legacyStatus;
  RongIMLib.CONNECTION_STATUS = legacyStatus;

  // A stand-in whose methods wait for the real object built by `create(wasm)`.
  const deferred = (create, asyncMethods, syncMethods) => {
    let real = null;
    now((w) => {
      try { real = create(w); } catch (e) { console.error(e); }
    });
    const api = {};
    for (const m of asyncMethods) {
      api[m] = (...args) => later(() => {
        if (!real) throw new Error('[rcall] plugin setup failed; see the console');
        return real[m](...args);
      });
    }
    for (const m of syncMethods) {
      api[m] = (...args) => { if (real) return real[m](...args); now(() => real && real[m](...args)); };
    }
    return api;
  };

  const RCRTC = Object.assign({}, enums.RCRTC, {
    device: {
      getCameras: () => later((w) => w.device_list('videoinput')),
      getMicrophones: () => later((w) => w.device_list('audioinput')),
      getSpeakers: () => later((w) => w.device_list('audiooutput')),
      // rcall extension: callback(devices) on every change; returns a function that stops it.
      onDeviceChange(callback) {
        let watcher = null;
        let stopped = false;
        now((w) => { if (!stopped) watcher = w.watch_devices(callback); });
        return () => { stopped = true; if (watcher) watcher.stop(); };
      },
    },
    installer: {
      tag: 'RCRTC',
      verify: () => typeof window !== 'undefined',
      setup: (options) => deferred((w) => w.install_rtc(options), [], ['getCurrentId']),
    },
  });

  const RCCall = Object.assign({}, enums.RCCall, {
    installer: {
      tag: 'RCCall',
      verify: () => typeof window !== 'undefined',
      setup: (options) => deferred(
        (w) => w.install_call(options),
        ['call', 'callInGroup', 'getJoinedUserInfo'],
        ['registerUserInfo', 'setPushConfig'],
      ),
    },
  });

  return { RongIMLib, RCRTC, RCCall, ready };
}
