// Loaded before the SDK. Keeps a list of every RTCPeerConnection the SDK drives (without replacing
// the constructor), and records uncaught errors, so the tests can inspect real WebRTC state.
(function () {
  'use strict';
  var now = function () { return performance.timeOrigin + performance.now(); };
  window.__pcs = [];
  window.__errors = [];
  // Deeper stacks for page errors (a wasm panic's interesting frames are below the 10th).
  Error.stackTraceLimit = 50;
  var P = window.RTCPeerConnection && window.RTCPeerConnection.prototype;
  if (P) {
    ['setLocalDescription', 'setRemoteDescription', 'addTrack', 'addTransceiver', 'createOffer'].forEach(function (m) {
      var orig = P[m];
      if (typeof orig !== 'function') return;
      P[m] = function () {
        if (window.__pcs.indexOf(this) < 0) window.__pcs.push(this);
        return orig.apply(this, arguments);
      };
    });
  }
  window.addEventListener('error', function (e) {
    window.__errors.push({ t: now(), type: 'error', message: String(e.message || e.error || e), source: e.filename ? e.filename + ':' + e.lineno : undefined });
  });
  window.addEventListener('unhandledrejection', function (e) {
    var r = e.reason;
    window.__errors.push({ t: now(), type: 'unhandledrejection', message: String(r && (r.stack || r.message) || r) });
  });
})();
