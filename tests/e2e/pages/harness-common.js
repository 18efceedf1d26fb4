// The <video> elements a harness page plays the SDK's tracks into, for harness.js and
// media-harness.js (load it before them): `window.harnessVideos(H, now, onFirstFrame)` sets
// H.videoState() and returns videoFor(key, userId, local), which makes (once per key) a muted
// autoplaying <video> in #videos, H.videos[key] = {el, userId, local, frames, firstFrameAt,
// firstWidth}, whose decoded frames it counts with requestVideoFrameCallback. `onFirstFrame(v,
// key)`, if given, runs at the first frame.
(function () {
  'use strict';
  window.harnessVideos = function (H, now, onFirstFrame) {
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
