// Shared by the bench pages: wall-clock timestamps comparable across pages (performance.timeOrigin
// + performance.now()), an event log, <video> elements whose frames are timed with
// requestVideoFrameCallback, and the plain camera-start measurement.
(function () {
  'use strict';
  var now = function () { return performance.timeOrigin + performance.now(); };
  var C = (window.BenchCommon = { now: now });

  // The 640x480@15 capture both the SDK (via constraints) and the baseline ask for.
  C.GUM = { audio: true, video: { width: 640, height: 480, frameRate: 15 } };

  // getUserMedia as the page found it; the wrapper below counts the calls made by others (the SDK).
  var md = navigator.mediaDevices;
  var origGum = md.getUserMedia.bind(md);
  C.gumCalls = [];
  var cameras = new WeakSet(); // tracks from getUserMedia, told apart from the SDK's blank warm-up track
  md.getUserMedia = function (constraints) {
    var rec = { t0: now(), t1: null, constraints: JSON.stringify(constraints) };
    C.gumCalls.push(rec);
    return origGum(constraints).then(function (s) { rec.t1 = now(); s.getTracks().forEach(function (t) { cameras.add(t); }); return s; }, function (e) { rec.t1 = now(); rec.error = String(e && e.name); throw e; });
  };

  // Time for a plain getUserMedia(C.GUM) until the first local video frame is decodable; the
  // stream is stopped right after. Not counted in gumCalls.
  C.camStart = async function () {
    var t0 = now();
    var s = await origGum(C.GUM);
    var ms = now() - t0;
    s.getTracks().forEach(function (t) { t.stop(); });
    return ms;
  };

  // Every RTCPeerConnection of the page (the SDK's too), for decoded-frame counters.
  C.pcs = [];
  var P = window.RTCPeerConnection && window.RTCPeerConnection.prototype;
  ['setLocalDescription', 'setRemoteDescription', 'addTrack', 'addTransceiver'].forEach(function (m) {
    var orig = P && P[m];
    if (typeof orig !== 'function') return;
    P[m] = function () {
      if (C.pcs.indexOf(this) < 0) C.pcs.push(this);
      if (m === 'setRemoteDescription') C.remoteDescriptions = (C.remoteDescriptions || 0) + 1;
      return orig.apply(this, arguments);
    };
  });
  // When a sender gets its track (the SDK attaches the camera this way on accept), for the breakdown;
  // `captured`: a getUserMedia track (rcall also warms its senders up on a blank canvas track).
  var S = window.RTCRtpSender && window.RTCRtpSender.prototype;
  if (S && typeof S.replaceTrack === 'function') {
    var origReplace = S.replaceTrack;
    S.replaceTrack = function (track) {
      var ev = C.log('replaceTrack', { kind: track ? track.kind : null, captured: !!track && cameras.has(track) });
      return origReplace.apply(this, arguments).then(function (r) { ev.done = now(); return r; });
    };
  }
  // Sum of framesDecoded / framesReceived over the inbound video of every open peer connection.
  // `perStream`: framesDecoded of each inbound video (key: connection + stats id), and
  // `audioPackets`: packetsReceived of each inbound audio, for per-stream rates.
  var pcIds = new WeakMap();
  var nextPcId = 0;
  C.decoded = async function () {
    var out = { framesDecoded: 0, framesReceived: 0, framesDropped: 0, streams: 0, perStream: {}, audioPackets: {}, audioSamples: {}, audioConcealed: {} };
    // `at`: when these counters were read (page clock), so rates use the stats' own interval.
    out.at = performance.now();
    C.pcs = C.pcs.filter(function (pc) { return pc.connectionState !== 'closed'; });
    for (var i = 0; i < C.pcs.length; i++) {
      var pc = C.pcs[i];
      if (!pcIds.has(pc)) pcIds.set(pc, ++nextPcId);
      var stats = await pc.getStats();
      stats.forEach(function (s) {
        if (s.type === 'inbound-rtp' && s.kind === 'video') {
          out.streams++;
          out.framesDecoded += s.framesDecoded || 0;
          out.framesReceived += s.framesReceived || 0;
          out.framesDropped += s.framesDropped || 0;
          out.perStream[pcIds.get(pc) + ':' + s.id] = s.framesDecoded || 0;
        } else if (s.type === 'inbound-rtp' && s.kind === 'audio') {
          out.audioPackets[pcIds.get(pc) + ':' + s.id] = s.packetsReceived || 0;
          // Played out (a page that plays its remote audio): samples and concealed samples.
          out.audioSamples[pcIds.get(pc) + ':' + s.id] = s.totalSamplesReceived || 0;
          out.audioConcealed[pcIds.get(pc) + ':' + s.id] = s.concealedSamples || 0;
        }
      });
    }
    out.remoteDescriptions = C.remoteDescriptions || 0;
    return out;
  };

  C.events = [];
  C.log = function (type, data) {
    var ev = Object.assign({ t: now(), type: type }, data || {});
    C.events.push(ev);
    return ev;
  };

  // key -> {el, userId, local, frames, firstFrameAt, width, height}
  C.videos = {};
  C.videoFor = function (key, userId, local) {
    var v = C.videos[key];
    if (v) return v;
    var el = document.createElement('video');
    el.autoplay = true;
    el.muted = true;
    el.playsInline = true;
    document.getElementById('videos').appendChild(el);
    v = C.videos[key] = { el: el, userId: userId, local: local, frames: 0, firstFrameAt: null, width: 0, height: 0, stopped: false };
    var onFrame = function (_, meta) {
      if (v.stopped) return;
      v.frames++;
      if (v.firstFrameAt === null) {
        v.firstFrameAt = now();
        C.log('firstFrame', { key: key, userId: userId, local: local });
      }
      v.width = meta && meta.width;
      v.height = meta && meta.height;
      el.requestVideoFrameCallback(onFrame);
    };
    el.requestVideoFrameCallback(onFrame);
    return v;
  };
  C.videoState = function () {
    return Object.keys(C.videos).map(function (k) {
      var v = C.videos[k];
      return { key: k, userId: v.userId, local: v.local, frames: v.frames, firstFrameAt: v.firstFrameAt, width: v.el.videoWidth, height: v.el.videoHeight };
    });
  };
  // Forgets the previous call: removes its <video> elements and events.
  C.reset = function () {
    Object.keys(C.videos).forEach(function (k) {
      var v = C.videos[k];
      v.stopped = true;
      v.el.srcObject = null;
      v.el.remove();
    });
    C.videos = {};
    C.events = [];
    C.gumCalls = [];
  };
  C.firstEvent = function (type, match) {
    return C.events.find(function (e) {
      return e.type === type && Object.keys(match || {}).every(function (k) { return e[k] === match[k]; });
    }) || null;
  };
})();
