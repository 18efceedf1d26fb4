// What harness.js and media-harness.js share (load it before them). `window.harnessCommon(H,
// now, onFirstFrame)` sets
//  - H.videoState(): the <video> elements the page plays the SDK's tracks into, and
//  - H.rtcStats(): WebRTC stats of every peer connection the SDK created (window.__pcs, from
//    harness-pre.js),
// and returns videoFor(key, userId, local), which makes (once per key) a muted autoplaying
// <video> in #videos, H.videos[key] = {el, userId, local, frames, firstFrameAt, firstWidth},
// whose decoded frames it counts with requestVideoFrameCallback. `onFirstFrame(v, key)`, if
// given, runs at the first frame.
(function () {
  'use strict';
  function errText(e) { return String((e && (e.stack || e.message)) || e); }
  var ufrag = function (d) { var m = d && /a=ice-ufrag:(\S+)/.exec(d.sdp); return m ? m[1] : null; };

  window.harnessCommon = function (H, now, onFirstFrame) {
    H.videoState = function () {
      return Object.keys(H.videos).map(function (key) {
        var v = H.videos[key];
        var q = v.el.getVideoPlaybackQuality ? v.el.getVideoPlaybackQuality() : {};
        return {
          key: key,
          userId: v.userId,
          local: v.local,
          frames: v.frames,
          totalVideoFrames: q.totalVideoFrames,
          videoWidth: v.el.videoWidth,
          videoHeight: v.el.videoHeight,
          readyState: v.el.readyState,
          paused: v.el.paused,
          hasSrcObject: !!v.el.srcObject,
          firstFrameAt: v.firstFrameAt,
        };
      });
    };

    H.rtcStats = async function () {
      var out = [];
      for (var i = 0; i < window.__pcs.length; i++) {
        var pc = window.__pcs[i];
        var entry = {
          connectionState: pc.connectionState, iceConnectionState: pc.iceConnectionState,
          inbound: [], outbound: [], senders: [], receivers: [], pair: null,
          localUfrag: ufrag(pc.localDescription), remoteUfrag: ufrag(pc.remoteDescription),
        };
        try {
          pc.getSenders().forEach(function (s) {
            entry.senders.push({ kind: s.track ? s.track.kind : null, trackId: s.track ? s.track.id : null, readyState: s.track ? s.track.readyState : null });
          });
          pc.getReceivers().forEach(function (r) {
            if (r.track) entry.receivers.push({ kind: r.track.kind, readyState: r.track.readyState, muted: r.track.muted, id: r.track.id });
          });
          var stats = await pc.getStats();
          var byId = {};
          stats.forEach(function (s) { byId[s.id] = s; });
          stats.forEach(function (s) {
            if (s.type === 'inbound-rtp') {
              entry.inbound.push({
                kind: s.kind,
                packetsReceived: s.packetsReceived,
                bytesReceived: s.bytesReceived,
                framesDecoded: s.framesDecoded,
                totalAudioEnergy: s.totalAudioEnergy,
                audioLevel: s.audioLevel,
              });
            }
            if (s.type === 'outbound-rtp') {
              entry.outbound.push({ kind: s.kind, packetsSent: s.packetsSent, bytesSent: s.bytesSent, framesEncoded: s.framesEncoded });
            }
            if (s.type === 'transport' && s.selectedCandidatePairId && byId[s.selectedCandidatePairId]) {
              var p = byId[s.selectedCandidatePairId];
              var l = byId[p.localCandidateId] || {};
              var r = byId[p.remoteCandidateId] || {};
              entry.pair = (l.address || l.ip) + ':' + l.port + ' <-> ' + (r.address || r.ip) + ':' + r.port + ' (' + l.protocol + ')';
              entry.pairTypes = [l.candidateType, r.candidateType];
            }
          });
        } catch (e) {
          entry.error = errText(e);
        }
        out.push(entry);
      }
      return out;
    };

    return function videoFor(key, userId, local) {
      var v = H.videos[key];
      if (v) return v;
      var el = document.createElement('video');
      el.id = key;
      el.autoplay = true;
      el.muted = true;
      el.playsInline = true;
      document.getElementById('videos').appendChild(el);
      v = H.videos[key] = { el: el, userId: userId, local: local, frames: 0, firstFrameAt: null, firstWidth: 0 };
      var onFrame = function () {
        v.frames++;
        if (v.firstFrameAt === null) {
          v.firstFrameAt = now();
          v.firstWidth = el.videoWidth;
          if (onFirstFrame) onFirstFrame(v, key);
        }
        el.requestVideoFrameCallback(onFrame);
      };
      el.requestVideoFrameCallback(onFrame);
      return v;
    };
  };
})();
