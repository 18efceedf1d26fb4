// Loaded before the SDK on the media harness page, after harness-pre.js (the peer connections,
// uncaught errors): wraps navigator.mediaDevices.getUserMedia to record every call the SDK makes
// in window.__gum (H.gumCalls()).
(function () {
  'use strict';
  var now = function () { return performance.timeOrigin + performance.now(); };
  window.__gum = [];
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
})();
