// Loaded before the SDK (media harness). Wraps navigator.mediaDevices.getUserMedia to record every
// call the SDK makes, keeps a list of every RTCPeerConnection the SDK drives (without replacing the
// constructor), and records uncaught errors.
(function () {
  'use strict';
  var now = function () { return performance.timeOrigin + performance.now(); };
  window.__gum = [];
  window.__pcs = [];
  window.__errors = [];
  var md = navigator.mediaDevices;
  if (md && md.getUserMedia) {
    var orig = md.getUserMedia.bind(md);
    md.getUserMedia = function (constraints) {
      var rec = { t: now(), constraints: JSON.parse(JSON.stringify(constraints || null)), result: 'pending' };
      window.__gum.push(rec);
      return orig(constraints).then(function (s) {
        rec.result = 'ok';
        rec.tracks = s.getTracks().map(function (t) { return { kind: t.kind, id: t.id, label: t.label }; });
        return s;
      }, function (e) {
        rec.result = (e && e.name) + ': ' + (e && e.message);
        throw e;
      });
    };
  }
  var P = window.RTCPeerConnection && window.RTCPeerConnection.prototype;
  if (P) {
    ['setLocalDescription', 'setRemoteDescription', 'addTrack', 'addTransceiver', 'createOffer'].forEach(function (m) {
      var o = P[m];
      if (typeof o !== 'function') return;
      P[m] = function () {
        if (window.__pcs.indexOf(this) < 0) window.__pcs.push(this);
        return o.apply(this, arguments);
      };
    });
  }
  window.addEventListener('error', function (e) {
    window.__errors.push({ t: now(), type: 'error', message: String(e.message || e.error || e) });
  });
  window.addEventListener('unhandledrejection', function (e) {
    var r = e.reason;
    window.__errors.push({ t: now(), type: 'unhandledrejection', message: String(r && (r.stack || r.message) || r) });
  });
})();
