// The baseline: a plain hand-written 1:1 video call. Signalling goes through a trivial WebSocket
// relay (run.mjs); media is negotiated only after the callee accepts:
//   caller: call() → invite (and its own camera starts, for the local preview)
//   callee: invite → "onSession", answers ringing
//   callee: accept() → getUserMedia → RTCPeerConnection + tracks → "accept"
//   caller: "accept" → RTCPeerConnection + tracks → offer; callee answers; ICE trickles both ways.
// ?ws=ws://127.0.0.1:PORT/ROOM&user=NAME
(function () {
  'use strict';
  var C = window.BenchCommon;
  var now = C.now;
  var params = new URLSearchParams(location.search);
  var me = params.get('user') || 'user';
  var B = (window.B = { C: C, pc: null, local: null, localReady: null, peer: null });
  var ws = new WebSocket(params.get('ws'));
  var opened = new Promise(function (resolve) { ws.onopen = resolve; });
  var pendingCandidates = [];

  function send(msg) { ws.send(JSON.stringify(Object.assign({ from: me }, msg))); }

  function makePc() {
    var pc = new RTCPeerConnection({ iceServers: [] });
    pc.onicecandidate = function (e) { if (e.candidate) send({ type: 'candidate', candidate: e.candidate.toJSON() }); };
    var shown = {};
    pc.ontrack = function (e) {
      C.log('onTrackReady', { local: false, kind: e.track.kind, userId: B.peer });
      var stream = e.streams[0];
      if (e.track.kind !== 'video' || !stream || shown[stream.id]) return;
      shown[stream.id] = true;
      var v = C.videoFor('remote-' + B.peer, B.peer, false);
      v.el.srcObject = stream;
    };
    B.pc = pc;
    return pc;
  }

  function addLocal(pc) { B.local.getTracks().forEach(function (t) { pc.addTrack(t, B.local); }); }

  function showLocal() {
    var v = C.videoFor('local-' + me, me, true);
    v.el.srcObject = B.local;
  }

  async function flushCandidates() {
    var list = pendingCandidates;
    pendingCandidates = [];
    for (var i = 0; i < list.length; i++) await B.pc.addIceCandidate(list[i]);
  }

  ws.onmessage = async function (ev) {
    var m = JSON.parse(ev.data);
    try {
      switch (m.type) {
        case 'invite': // callee
          B.peer = m.from;
          C.log('onSession', { callerId: m.from });
          send({ type: 'ringing' });
          break;
        case 'ringing': // caller
          C.log('onRinging', { userId: m.from });
          break;
        case 'accept': { // caller: negotiate now
          C.log('onAccept', { userId: m.from });
          await B.localReady;
          var pc = makePc();
          addLocal(pc);
          var offer = await pc.createOffer();
          await pc.setLocalDescription(offer);
          send({ type: 'offer', sdp: pc.localDescription.toJSON() });
          break;
        }
        case 'offer': { // callee
          await B.pc.setRemoteDescription(m.sdp);
          await flushCandidates();
          var answer = await B.pc.createAnswer();
          await B.pc.setLocalDescription(answer);
          send({ type: 'answer', sdp: B.pc.localDescription.toJSON() });
          break;
        }
        case 'answer': // caller
          await B.pc.setRemoteDescription(m.sdp);
          await flushCandidates();
          break;
        case 'candidate':
          if (B.pc && B.pc.remoteDescription) await B.pc.addIceCandidate(m.candidate);
          else pendingCandidates.push(m.candidate);
          break;
        case 'hangup':
          C.log('onHungup', { userId: m.from });
          B.close();
          C.log('onSessionClose', {});
          break;
      }
    } catch (e) {
      C.log('error', { message: String(e && (e.stack || e.message) || e) });
    }
  };

  B.call = async function (targetId) {
    await opened;
    var t0 = now();
    C.log('call', { targetId: targetId });
    B.peer = targetId;
    send({ type: 'invite' });
    // The local preview starts in parallel with the invite.
    B.localReady = navigator.mediaDevices.getUserMedia(C.GUM).then(function (s) { B.local = s; showLocal(); });
    return { code: 10000, t0: t0, t1: now() };
  };

  B.accept = async function () {
    var t0 = now();
    C.log('accept');
    B.local = await navigator.mediaDevices.getUserMedia(C.GUM);
    showLocal();
    var pc = makePc();
    addLocal(pc);
    send({ type: 'accept' });
    return { code: 10000, t0: t0, t1: now() };
  };

  B.close = function () {
    if (B.pc) B.pc.close();
    B.pc = null;
    if (B.local) B.local.getTracks().forEach(function (t) { t.stop(); });
    B.local = null;
    B.localReady = null;
    pendingCandidates = [];
  };

  B.hungup = async function () {
    send({ type: 'hangup' });
    B.close();
    C.log('onSessionClose', {});
    return { code: 10000 };
  };

  B.reset = function () { C.reset(); };
  opened.then(function () { B.ready = true; });
})();
