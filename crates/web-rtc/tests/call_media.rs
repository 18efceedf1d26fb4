//! Browser tests of what the SDK needs during a call: the `onRTCStateReport`
//! stats, device lists and change notifications, switching tracks without
//! renegotiation, and links connected before anything is captured.
//! Run like `tests/web.rs` (see there).
#![cfg(target_arch = "wasm32")]

mod common;

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use common::*;
use wasm_bindgen::JsValue;
use wasm_bindgen_test::*;
use web_rtc::*;
use web_sys::RtcSignalingState;

wasm_bindgen_test_configure!(run_in_browser);

/// Two links, both sending `media` captured per side, connected.
async fn connected_pair(audio_video: bool) -> (Side, Side, LocalMedia, LocalMedia) {
    let req = if audio_video {
        CaptureRequest::audio_video()
    } else {
        CaptureRequest::audio_only()
    };
    let media_a = capture(&req).await.unwrap();
    let media_b = capture(&req).await.unwrap();
    let (a, b) = (Side::new(), Side::new());
    a.link.add_local_media(&media_a).unwrap();
    b.link.add_local_media(&media_b).unwrap();
    connect(&a, &b).await;
    let n = media_a.tracks().len();
    pump_until(&a, &b, "connected with remote tracks", || {
        a.connected()
            && b.connected()
            && a.remote_tracks().len() == n
            && b.remote_tracks().len() == n
    })
    .await;
    no_rejected(&a);
    no_rejected(&b);
    (a, b, media_a, media_b)
}

fn stat(list: &[TrackStat], kind: Kind) -> &TrackStat {
    list.iter()
        .find(|s| s.kind == kind)
        .unwrap_or_else(|| panic!("no {kind:?} stat in {list:#?}"))
}

// ---------------------------------------------------------------- stats

#[wasm_bindgen_test]
async fn state_report_before_connecting_is_empty() {
    let link = PeerLink::new(&PeerConfig::default(), |_| {}).unwrap();
    let report = StatsSampler::new().sample(&link).await.unwrap();
    assert!(report.ice_candidate_pair.is_none());
    assert!(report.senders.is_empty() && report.receivers.is_empty());
    assert!(report.timestamp > 1.6e12, "epoch ms: {}", report.timestamp);
    let js = report.to_js();
    assert_eq!(keys(&js), ["receivers", "senders", "timestamp"]);
    link.close();
    assert_eq!(
        StatsSampler::new().sample(&link).await.unwrap_err(),
        MediaError::Closed
    );
}

#[wasm_bindgen_test]
async fn state_report_has_pair_bitrates_and_track_stats() {
    let (a, b, media_a, media_b) = connected_pair(true).await;
    wait_for_frames(&b.link).await;

    let mut sampler = StatsSampler::new();
    let first = sampler.sample(&b.link).await.unwrap();
    let pair = first
        .ice_candidate_pair
        .as_ref()
        .expect("a pair once connected");
    assert_eq!(
        (pair.bitrate_send, pair.bitrate_recv),
        (0.0, 0.0),
        "no rates on the first sample"
    );
    sleep(1000).await;
    let report = sampler.sample(&b.link).await.unwrap();
    console_log!("{report:#?}");

    let pair = report.ice_candidate_pair.as_ref().expect("a pair");
    assert_eq!(pair.ip, "127.0.0.1");
    assert_eq!(pair.remote_ip, "127.0.0.1");
    assert!(pair.port > 0 && pair.remote_port > 0 && pair.port != pair.remote_port);
    assert_eq!(pair.protocol, "udp");
    assert!(pair.rtt.is_some_and(|r| r >= 0.0), "rtt {:?}", pair.rtt);
    // Fake 640x480 VP8 + Opus: well above 50 kbit/s, below 50 Mbit/s.
    assert!(
        pair.bitrate_recv > 50.0 && pair.bitrate_recv < 50_000.0,
        "{pair:?}"
    );
    assert!(
        pair.bitrate_send > 50.0 && pair.bitrate_send < 50_000.0,
        "{pair:?}"
    );
    assert!(report.timestamp - first.timestamp >= 900.0);

    // Receivers: a's tracks as b sees them.
    let (remote_video, _) = b.remote_track(Kind::Video).unwrap();
    let (remote_audio, _) = b.remote_track(Kind::Audio).unwrap();
    assert_eq!(report.receivers.len(), 2, "{:#?}", report.receivers);
    let rv = stat(&report.receivers, Kind::Video);
    assert_eq!(rv.track_id, remote_video.id());
    assert!(rv.remote_resource);
    assert!(
        rv.frame_width.is_some_and(|w| w > 0) && rv.frame_height.is_some_and(|h| h > 0),
        "{rv:?}"
    );
    assert!(rv.bitrate > 10.0, "{rv:?}");
    assert!(rv.audio_level.is_none());
    let ra = stat(&report.receivers, Kind::Audio);
    assert_eq!(ra.track_id, remote_audio.id());
    assert!(ra.remote_resource && ra.bitrate > 1.0, "{ra:?}");
    assert!(ra.frame_width.is_none() && ra.frame_rate.is_none());
    for r in &report.receivers {
        assert!(
            r.packets_lost_rate
                .is_some_and(|l| (0.0..=1.0).contains(&l)),
            "{r:?}"
        );
        assert!(r.jitter.is_some_and(|j| j >= 0.0), "{r:?}");
    }

    // Senders: b's own tracks.
    assert_eq!(report.senders.len(), 2, "{:#?}", report.senders);
    let sv = stat(&report.senders, Kind::Video);
    assert_eq!(sv.track_id, media_b.video().unwrap().id());
    assert!(!sv.remote_resource);
    assert!(sv.frame_width.is_some_and(|w| w > 0), "{sv:?}");
    assert!(sv.bitrate > 10.0, "{sv:?}");
    let sa = stat(&report.senders, Kind::Audio);
    assert_eq!(sa.track_id, media_b.audio().unwrap().id());
    assert!(!sa.remote_resource && sa.bitrate > 1.0, "{sa:?}");
    assert!(
        sa.audio_level.is_some_and(|l| (0.0..=1.0).contains(&l)),
        "{sa:?}"
    );

    // The JS shape handed to onRTCStateReport.
    let js = report.to_js();
    assert_eq!(
        keys(&js),
        ["iceCandidatePair", "receivers", "senders", "timestamp"]
    );
    let js_pair = field(&js, "iceCandidatePair");
    assert_eq!(
        keys(&js_pair),
        [
            "IP",
            "availableIncomingBitrate",
            "availableOutgoingBitrate",
            "bitrateRecv",
            "bitrateSend",
            "networkType",
            "port",
            "protocol",
            "remoteIP",
            "remotePort",
            "rtt"
        ]
    );
    assert_eq!(field(&js_pair, "IP"), JsValue::from_str("127.0.0.1"));
    assert_eq!(field(&js_pair, "protocol"), JsValue::from_str("udp"));
    assert_eq!(
        field(&js_pair, "bitrateRecv").as_f64(),
        Some(pair.bitrate_recv)
    );
    let receivers: js_sys::Array = field(&js, "receivers").into();
    let senders: js_sys::Array = field(&js, "senders").into();
    assert_eq!((receivers.length(), senders.length()), (2, 2));
    let required = [
        "bitrate",
        "jitter",
        "kind",
        "packetsLostRate",
        "remoteResource",
        "trackId",
    ];
    let optional = ["audioLevel", "frameHeight", "frameRate", "frameWidth"];
    for s in receivers.iter().chain(senders.iter()) {
        let k = keys(&s);
        for r in required {
            assert!(k.iter().any(|x| x == r), "{r} missing in {k:?}");
        }
        for x in &k {
            assert!(
                required.contains(&x.as_str()) || optional.contains(&x.as_str()),
                "unexpected key {x}"
            );
        }
        let kind = field(&s, "kind").as_string().unwrap();
        assert!(kind == "audio" || kind == "video");
        if kind == "video" {
            assert!(field(&s, "frameWidth").as_f64().unwrap() > 0.0);
        }
    }
    let js_rv = receivers
        .iter()
        .find(|s| field(s, "kind") == JsValue::from_str("video"))
        .unwrap();
    assert_eq!(
        field(&js_rv, "trackId"),
        JsValue::from_str(&remote_video.id())
    );
    assert_eq!(field(&js_rv, "remoteResource"), JsValue::TRUE);

    a.link.close();
    b.link.close();
    media_a.stop();
    media_b.stop();
}

async fn wait_for_frames(link: &PeerLink) {
    let start = now_ms();
    while frames_decoded(link).await == 0 {
        assert!(now_ms() - start < 5000.0, "no remote frames decoded");
        sleep(20).await;
    }
}

// ---------------------------------------------------------------- devices

#[wasm_bindgen_test]
async fn device_lists_by_kind() {
    capture(&CaptureRequest::audio_only()).await.unwrap().stop(); // labels
    let all = enumerate_devices().await.unwrap();
    let cams = cameras().await.unwrap();
    let mics = microphones().await.unwrap();
    let outs = speakers().await.unwrap();
    console_log!(
        "{} cameras, {} microphones, {} speakers",
        cams.len(),
        mics.len(),
        outs.len()
    );
    assert!(!cams.is_empty() && cams.iter().all(|d| d.kind == DeviceKind::VideoInput));
    assert!(!mics.is_empty() && mics.iter().all(|d| d.kind == DeviceKind::AudioInput));
    assert!(outs.iter().all(|d| d.kind == DeviceKind::AudioOutput));
    assert_eq!(cams.len() + mics.len() + outs.len(), all.len());
    assert!(
        cams.iter().all(|d| !d.label.is_empty()),
        "labels after capture: {cams:?}"
    );
}

/// Headless Chromium never changes its fake devices, so the test fires the
/// same `devicechange` event the browser would (a synthetic one).
#[wasm_bindgen_test]
async fn device_watch_reports_changes_until_dropped() {
    let devices = web_sys::window()
        .unwrap()
        .navigator()
        .media_devices()
        .unwrap();
    let fire = || {
        let ev = web_sys::Event::new("devicechange").unwrap();
        devices.dispatch_event(&ev).unwrap();
    };
    let expected = enumerate_devices().await.unwrap();
    let got: Rc<RefCell<Vec<Vec<DeviceInfo>>>> = Rc::default();
    let g = got.clone();
    let watch = watch_devices(move |list| g.borrow_mut().push(list)).unwrap();
    assert!(
        devices.ondevicechange().is_none(),
        "the app's ondevicechange slot stays free"
    );

    // A second watcher coexists.
    let other = Rc::new(Cell::new(0));
    let o = other.clone();
    let watch2 = watch_devices(move |_| o.set(o.get() + 1)).unwrap();

    sleep(100).await;
    assert!(got.borrow().is_empty(), "nothing before an event");
    fire();
    wait_for("the device list", 2000.0, || got.borrow().len() == 1).await;
    assert_eq!(got.borrow()[0], expected);
    wait_for("the second watcher", 2000.0, || other.get() == 1).await;

    // A burst delivers the newest listing only.
    fire();
    fire();
    fire();
    wait_for("the burst's list", 2000.0, || got.borrow().len() >= 2).await;
    sleep(200).await;
    assert_eq!(got.borrow().len(), 2, "one delivery per burst");

    // Dropped: no more calls, even for a listing already in flight.
    fire();
    drop(watch);
    fire();
    sleep(300).await;
    assert_eq!(got.borrow().len(), 2, "no calls after drop");
    // The other watcher got both events, coalesced into one listing.
    assert_eq!(other.get(), 3, "the other watcher still works");
    drop(watch2);
    fire();
    sleep(300).await;
    assert_eq!(other.get(), 3);
}

// ---------------------------------------------------------------- track control

#[wasm_bindgen_test]
async fn set_enabled_toggles_the_track() {
    let media = capture(&CaptureRequest::audio_video()).await.unwrap();
    let v = media.video().unwrap();
    set_enabled(&v, false);
    assert!(!v.enabled() && is_live(&v), "disabled, still capturing");
    set_enabled(&v, true);
    assert!(v.enabled());
    media.stop();
}

#[wasm_bindgen_test]
async fn switching_microphone_and_camera_needs_no_renegotiation() {
    let (a, b, media_a, media_b) = connected_pair(true).await;
    wait_for_frames(&b.link).await;
    sleep(100).await;
    let (na, _ka) = count_negotiation_needed(&a.link);
    let (nb, _kb) = count_negotiation_needed(&b.link);
    let remote_tracks_before = b.remote_tracks().len();
    let (remote_audio, _) = b.remote_track(Kind::Audio).unwrap();
    let (mut sampler, mut sampler_a) = (StatsSampler::new(), StatsSampler::new());
    let stable = || {
        assert_eq!(a.link.signaling_state(), RtcSignalingState::Stable);
        assert_eq!(b.link.signaling_state(), RtcSignalingState::Stable);
    };

    assert_eq!(
        a.link.sender_track(Kind::Audio).map(|t| t.id()),
        media_a.audio().map(|t| t.id())
    );
    let err = a
        .link
        .replace_track(Kind::Audio, media_a.video().as_ref())
        .await
        .unwrap_err();
    assert!(matches!(err, MediaError::InvalidArgument(_)), "{err:?}");

    // changeAudioDevice: a new microphone, the old one released.
    let mic2 = capture(&CaptureRequest::audio_only()).await.unwrap();
    let mic2_track = mic2.audio().unwrap();
    assert!(a
        .link
        .replace_track(Kind::Audio, Some(&mic2_track))
        .await
        .unwrap());
    media_a.audio().unwrap().stop();
    assert_eq!(
        a.link.sender_track(Kind::Audio).unwrap().id(),
        mic2_track.id()
    );
    sampler.sample(&b.link).await.unwrap();
    sleep(600).await;
    let report = sampler.sample(&b.link).await.unwrap();
    let ra = stat(&report.receivers, Kind::Audio);
    assert_eq!(ra.track_id, remote_audio.id(), "same remote track");
    assert!(
        ra.bitrate > 1.0,
        "audio from the new microphone flows: {ra:?}"
    );
    assert!(is_live(&remote_audio) && !remote_audio.muted());
    let sent = sampler_a.sample(&a.link).await.unwrap();
    let sa = stat(&sent.senders, Kind::Audio);
    assert_eq!(
        sa.track_id,
        mic2_track.id(),
        "sender stats name the new track"
    );
    stable();

    // Camera off: nothing sent, old camera stopped; remote frames stop.
    assert!(a.link.replace_track(Kind::Video, None).await.unwrap());
    assert!(a.link.sender_track(Kind::Video).is_none());
    media_a.video().unwrap().stop();
    sleep(300).await; // frames in flight
    let f1 = frames_decoded(&b.link).await;
    sleep(700).await;
    let f2 = frames_decoded(&b.link).await;
    assert_eq!(f1, f2, "no frames while no camera is attached");
    let report = sampler_a.sample(&a.link).await.unwrap();
    assert!(
        report.senders.iter().all(|s| s.kind != Kind::Video),
        "no video sender stat without a track: {:#?}",
        report.senders
    );
    console_log!(
        "remote video muted events while the camera was off: {}",
        b.muted(Kind::Video)
    );

    // Camera on again: a fresh capture (CallLib re-captures) on the same sender.
    let cam2 = capture(&CaptureRequest::video_only()).await.unwrap();
    let t = now_ms();
    a.link
        .attach(Kind::Video, &cam2.video().unwrap())
        .await
        .unwrap();
    let start = now_ms();
    while frames_decoded(&b.link).await < f2 + 5 {
        assert!(now_ms() - start < 5000.0, "remote frames resume");
        sleep(10).await;
    }
    console_log!(
        "camera re-attach -> 5 new remote frames: {:.0} ms",
        now_ms() - t
    );

    stable();
    assert_eq!(
        (na.get(), nb.get()),
        (0, 0),
        "negotiationneeded never fired"
    );
    assert_eq!(
        b.remote_tracks().len(),
        remote_tracks_before,
        "no new remote tracks"
    );
    // The probe works: a direction change does need a renegotiation.
    let t: web_sys::RtcRtpTransceiver = a.link.raw().get_transceivers().get(0).into();
    t.set_direction(web_sys::RtcRtpTransceiverDirection::Recvonly);
    wait_for("negotiationneeded", 2000.0, || na.get() == 1).await;

    a.link.close();
    b.link.close();
    media_a.stop();
    media_b.stop();
    mic2.stop();
    cam2.stop();
}

// ---------------------------------------------------------------- pre-connected links

#[wasm_bindgen_test]
async fn prepared_links_connect_without_media_then_attach_starts_it() {
    let (a, b) = (Side::new(), Side::new());
    a.link.prepare(&[Kind::Video, Kind::Audio]).unwrap();
    a.link.prepare(&[Kind::Audio]).unwrap(); // idempotent
    b.link.prepare(&[Kind::Audio, Kind::Video]).unwrap();
    assert_eq!(a.link.prepared_kinds(), [Kind::Audio, Kind::Video]);

    // Offer/answer with no track anywhere.
    connect(&a, &b).await;
    let offer = a.link.raw().local_description().unwrap().sdp();
    let (audio_at, video_at) = (
        offer.find("m=audio").unwrap(),
        offer.find("m=video").unwrap(),
    );
    assert!(audio_at < video_at, "audio section first");
    assert_eq!(offer.matches("a=sendrecv").count(), 2, "{offer}");
    let answer = b.link.raw().remote_description().unwrap();
    assert!(answer.sdp().contains("m=video"));
    let answer = a.link.raw().remote_description().unwrap().sdp();
    assert_eq!(answer.matches("a=sendrecv").count(), 2, "{answer}");
    let t_connect = now_ms();
    pump_until(&a, &b, "connected", || a.connected() && b.connected()).await;
    console_log!(
        "prepared: offer/answer -> connected in {:.0} ms",
        now_ms() - t_connect
    );
    assert_eq!(
        a.link.raw().get_transceivers().length(),
        2,
        "no extra transceivers"
    );
    assert_eq!(
        b.link.raw().get_transceivers().length(),
        2,
        "no extra transceivers"
    );
    let (na, _ka) = count_negotiation_needed(&a.link);
    let (nb, _kb) = count_negotiation_needed(&b.link);

    // ontrack fired at negotiation time, for muted tracks.
    for side in [&a, &b] {
        assert_eq!(side.remote_tracks().len(), 2);
        let (at, astream) = side.remote_track(Kind::Audio).unwrap();
        let (vt, vstream) = side.remote_track(Kind::Video).unwrap();
        assert!(at.muted() && vt.muted(), "no media yet");
        assert_eq!(astream.id(), vstream.id(), "grouped in one remote stream");
        assert!(side.link.sender_track(Kind::Audio).is_none());
        assert!(side.link.sender_track(Kind::Video).is_none());
    }

    // Nothing flows while ringing.
    sleep(700).await;
    for side in [&a, &b] {
        assert_eq!(
            rtp_bytes(&side.link).await,
            (0.0, 0.0),
            "no RTP before attach"
        );
        assert_eq!(side.unmuted(Kind::Audio) + side.unmuted(Kind::Video), 0);
        let report = StatsSampler::new().sample(&side.link).await.unwrap();
        assert!(report.ice_candidate_pair.is_some(), "ICE is up");
        assert!(report.senders.is_empty(), "{:#?}", report.senders);
        assert!(report.receivers.iter().all(|r| r.bitrate == 0.0));
    }

    // Misuse is reported.
    assert!(matches!(
        a.link.prepare(&[Kind::Audio]).unwrap_err(),
        MediaError::InvalidArgument(_)
    ));
    let media_a = capture(&CaptureRequest::audio_video()).await.unwrap();
    let err = a
        .link
        .attach(Kind::Video, &media_a.audio().unwrap())
        .await
        .unwrap_err();
    assert!(matches!(err, MediaError::InvalidArgument(_)), "{err:?}");
    let unprepared = PeerLink::new(&PeerConfig::default(), |_| {}).unwrap();
    let err = unprepared
        .attach(Kind::Audio, &media_a.audio().unwrap())
        .await
        .unwrap_err();
    assert!(matches!(err, MediaError::InvalidArgument(_)), "{err:?}");

    // Accept: capture and attach on both sides.
    let media_b = capture(&CaptureRequest::audio_video()).await.unwrap();
    // b plays a's video right away (before media flows, like an SDK that
    // plays on RemoteTrack); play() resolves once frames arrive.
    let el = video_element();
    let (remote_video, _) = b.remote_track(Kind::Video).unwrap();
    let played: Rc<RefCell<Option<Result<Playback, MediaError>>>> = Rc::default();
    let (p, track, element) = (
        played.clone(),
        Clone::clone(&remote_video),
        Clone::clone(&el),
    );
    wasm_bindgen_futures::spawn_local(async move {
        *p.borrow_mut() = Some(play(&track, Some(&element)).await);
    });
    sleep(50).await;
    assert!(played.borrow().is_none(), "play() waits for media");
    let t_attach = now_ms();
    for (side, media) in [(&a, &media_a), (&b, &media_b)] {
        side.link
            .attach(Kind::Audio, &media.audio().unwrap())
            .await
            .unwrap();
        side.link
            .attach(Kind::Video, &media.video().unwrap())
            .await
            .unwrap();
    }
    assert_eq!(
        a.link.sender_track(Kind::Video).unwrap().id(),
        media_a.video().unwrap().id()
    );
    wait_for("the remote video unmutes", 5000.0, || {
        b.unmuted(Kind::Video) == 1
    })
    .await;
    let t_unmute = now_ms() - t_attach;
    wait_for("a remote frame", 5000.0, || el.video_width() > 0).await;
    let t_frame = now_ms() - t_attach;
    wait_for("play() resolves", 5000.0, || played.borrow().is_some()).await;
    let playback = played.borrow_mut().take().unwrap().expect("play");
    console_log!(
        "prepared link: attach -> remote video unmuted {t_unmute:.0} ms, first frame shown {t_frame:.0} ms"
    );
    assert!(!remote_video.muted());
    wait_for("a's remote audio and video unmute", 5000.0, || {
        a.unmuted(Kind::Audio) == 1 && a.unmuted(Kind::Video) == 1 && b.unmuted(Kind::Audio) == 1
    })
    .await;

    // Frames keep advancing.
    let q1 = el.get_video_playback_quality().total_video_frames();
    sleep(500).await;
    let q2 = el.get_video_playback_quality().total_video_frames();
    assert!(q2 > q1, "frames advance: {q1} -> {q2}");
    assert!(frames_decoded(&a.link).await > 0, "a decodes b's video too");

    assert_eq!((na.get(), nb.get()), (0, 0), "attach never renegotiates");
    assert_eq!(a.link.signaling_state(), RtcSignalingState::Stable);
    assert_eq!(b.remote_tracks().len(), 2, "no new ontrack on attach");
    assert_eq!(a.muted(Kind::Video) + b.muted(Kind::Video), 0);

    // Going audio-only: stop sending video, the sender stays negotiated.
    b.link.attach_none(Kind::Video).await.unwrap();
    assert!(b.link.sender_track(Kind::Video).is_none());
    assert!(b.link.sender_track(Kind::Audio).is_some());
    assert_eq!(b.link.raw().get_transceivers().length(), 2);
    unprepared.attach_none(Kind::Video).await.unwrap(); // no sender: nothing to stop

    playback.stop();
    el.remove();
    a.link.close();
    b.link.close();
    unprepared.close();
    media_a.stop();
    media_b.stop();
}

/// The callee prepares, the caller sends real media from the start (or
/// the other way round): the kinds line up on the offered sections.
#[wasm_bindgen_test]
async fn prepared_answerer_with_a_media_offerer() {
    let media_a = capture(&CaptureRequest::audio_video()).await.unwrap();
    let (a, b) = (Side::new(), Side::new());
    a.link.add_local_media(&media_a).unwrap();
    b.link.prepare(&[Kind::Audio, Kind::Video]).unwrap();
    connect(&a, &b).await;
    pump_until(&a, &b, "b gets a's media", || {
        a.connected() && b.connected() && b.unmuted(Kind::Video) == 1
    })
    .await;
    assert_eq!(
        a.remote_tracks().len(),
        2,
        "b's prepared sections are sendrecv"
    );
    assert_eq!(a.unmuted(Kind::Video), 0);
    let media_b = capture(&CaptureRequest::audio_video()).await.unwrap();
    b.link
        .attach(Kind::Video, &media_b.video().unwrap())
        .await
        .unwrap();
    wait_for("a gets b's video", 5000.0, || a.unmuted(Kind::Video) == 1).await;
    assert_eq!(b.link.raw().get_transceivers().length(), 2);
    a.link.close();
    b.link.close();
    media_a.stop();
    media_b.stop();
}

/// `RemoteTrackMuted` is what Chromium reports when the remote side stops
/// sending by renegotiation (here: its transceiver turns `recvonly`); it
/// comes back as `RemoteTrackUnmuted` when it sends again.
#[wasm_bindgen_test]
async fn remote_track_mute_and_unmute_follow_the_remote_direction() {
    let (a, b, media_a, media_b) = connected_pair(false).await;
    wait_for("b's remote audio unmutes", 5000.0, || {
        b.unmuted(Kind::Audio) == 1
    })
    .await;
    assert_eq!(b.muted(Kind::Audio), 0);
    let (remote_audio, _) = b.remote_track(Kind::Audio).unwrap();

    let transceiver: web_sys::RtcRtpTransceiver = a.link.raw().get_transceivers().get(0).into();
    let renegotiate = || async {
        let offer = a.link.create_offer().await.unwrap();
        let answer = b.link.accept_offer(&offer).await.unwrap();
        a.link.accept_answer(&answer).await.unwrap();
    };
    transceiver.set_direction(web_sys::RtcRtpTransceiverDirection::Recvonly);
    renegotiate().await;
    wait_for("b's remote audio mutes", 5000.0, || {
        b.muted(Kind::Audio) == 1
    })
    .await;
    assert!(remote_audio.muted());

    transceiver.set_direction(web_sys::RtcRtpTransceiverDirection::Sendrecv);
    renegotiate().await;
    wait_for("b's remote audio unmutes again", 5000.0, || {
        b.unmuted(Kind::Audio) >= 2
    })
    .await;
    sleep(200).await;
    assert_eq!(b.unmuted(Kind::Audio), 2, "one listener per track");
    assert_eq!(
        b.remote_tracks().len(),
        1,
        "the resumed track is not reported again"
    );
    assert!(!remote_audio.muted());

    // After close, the listeners are gone: no more events.
    b.link.close();
    let n = b.events.borrow().len();
    transceiver.set_direction(web_sys::RtcRtpTransceiverDirection::Recvonly);
    let _ = a.link.create_offer().await.unwrap();
    sleep(300).await;
    assert_eq!(b.events.borrow().len(), n);
    a.link.close();
    media_a.stop();
    media_b.stop();
}

/// The SDK's order when a side already captured: prepare, attach, then
/// negotiate. Early tracks wait for the senders the negotiation creates.
#[wasm_bindgen_test]
async fn attach_before_negotiating_is_applied_by_it() {
    let media_a = capture(&CaptureRequest::audio_video()).await.unwrap();
    let media_b = capture(&CaptureRequest::audio_video()).await.unwrap();
    let (a, b) = (Side::new(), Side::new());
    let (video_a, audio_b) = (media_a.video().unwrap(), media_b.audio().unwrap());

    // a (offerer) attaches both, then switches the camera off again.
    a.link.prepare(&[Kind::Audio, Kind::Video]).unwrap();
    a.link
        .attach(Kind::Audio, &media_a.audio().unwrap())
        .await
        .unwrap();
    a.link.attach(Kind::Video, &video_a).await.unwrap();
    assert_eq!(a.link.sender_track(Kind::Video).unwrap().id(), video_a.id());
    assert_eq!(a.link.raw().get_transceivers().length(), 0, "nothing yet");
    a.link.attach_none(Kind::Video).await.unwrap();
    assert!(a.link.sender_track(Kind::Video).is_none());

    // b (answerer) sends audio only; video was not prepared.
    b.link.prepare(&[Kind::Audio]).unwrap();
    b.link.attach(Kind::Audio, &audio_b).await.unwrap();
    let err = b
        .link
        .attach(Kind::Video, &media_b.video().unwrap())
        .await
        .unwrap_err();
    assert!(matches!(err, MediaError::InvalidArgument(_)), "{err:?}");

    connect(&a, &b).await;
    pump_until(&a, &b, "audio both ways", || {
        a.connected() && b.connected() && a.unmuted(Kind::Audio) == 1 && b.unmuted(Kind::Audio) == 1
    })
    .await;
    assert_eq!(
        a.link.sender_track(Kind::Audio).unwrap().id(),
        media_a.audio().unwrap().id()
    );
    assert_eq!(b.link.sender_track(Kind::Audio).unwrap().id(), audio_b.id());
    assert_eq!(a.link.raw().get_transceivers().length(), 2);
    assert_eq!(b.link.raw().get_transceivers().length(), 2);
    assert!(
        a.remote_track(Kind::Video).is_none(),
        "b does not send video"
    );
    let err = b
        .link
        .attach(Kind::Video, &media_b.video().unwrap())
        .await
        .unwrap_err();
    assert!(
        matches!(err, MediaError::InvalidArgument(_)),
        "still no video sender on b"
    );
    sleep(300).await;
    assert_eq!(b.unmuted(Kind::Video), 0, "a's camera is off");

    // Camera on after connecting: no renegotiation.
    let (na, _k) = count_negotiation_needed(&a.link);
    a.link.attach(Kind::Video, &video_a).await.unwrap();
    wait_for("a's video reaches b", 5000.0, || {
        b.unmuted(Kind::Video) == 1
    })
    .await;
    assert_eq!(na.get(), 0);

    a.link.close();
    b.link.close();
    media_a.stop();
    media_b.stop();
}

/// Warm-up (`web_rtc::warmup`): while a prepared link rings, its video encoder starts on a blank
/// track behind a closed gate — nothing reaches the peer — and the blank track comes off once
/// the encoder is warm. Attach then sends the camera, whose first frame (asked for as a keyframe
/// by the receiving side) decodes at once.
#[wasm_bindgen_test]
async fn warmed_links_send_nothing_before_attach_then_a_keyframe_at_once() {
    warmup::start();
    wait_for("the warm-up worker", 3000.0, warmup::is_ready).await;
    let (a, b) = (Side::new(), Side::new());
    a.link.prepare(&[Kind::Audio, Kind::Video]).unwrap();
    b.link.prepare(&[Kind::Audio, Kind::Video]).unwrap();
    connect(&a, &b).await;
    assert!(
        a.link.video_gated() && b.link.video_gated(),
        "both video senders gated"
    );
    assert!(
        a.link.sender_track(Kind::Video).is_none(),
        "the blank track is no sender track"
    );
    pump_until(&a, &b, "connected", || a.connected() && b.connected()).await;
    let t_connected = now_ms();
    wait_for("both encoders warm", 5000.0, || {
        !a.link.warming_up() && !b.link.warming_up()
    })
    .await;
    console_log!(
        "warm-up: encoders warm {:.0} ms after connecting",
        now_ms() - t_connected
    );
    sleep(500).await;
    for side in [&a, &b] {
        assert_eq!(
            rtp_bytes(&side.link).await,
            (0.0, 0.0),
            "no media before attach"
        );
        assert_eq!(side.unmuted(Kind::Video), 0);
        assert!(side.link.video_gated());
    }
    assert_eq!(frames_decoded(&b.link).await, 0);

    // Accept: b asks a for a keyframe, a attaches its running camera.
    let media_a = capture(&CaptureRequest::audio_video()).await.unwrap();
    let camera = media_a.video().unwrap();
    sleep(300).await; // a camera that is already running, like a caller's
                      // The request goes out at once, before any frame arrived (Chromium's receivers only ask
                      // once they got something undecodable).
    b.link.request_key_frames();
    let mut plis = 0.0;
    for _ in 0..100 {
        plis = video_stat(&a.link, "outbound-rtp", "pliCount").await;
        if plis >= 1.0 {
            break;
        }
        sleep(10).await;
    }
    assert!(plis >= 1.0, "a got no keyframe request from b");
    let t_attach = now_ms();
    a.link.attach(Kind::Video, &camera).await.unwrap();
    assert!(!a.link.video_gated(), "attach opens the gate");
    assert_eq!(a.link.sender_track(Kind::Video).unwrap().id(), camera.id());
    let mut decoded = 0;
    for _ in 0..100 {
        decoded = frames_decoded(&b.link).await;
        if decoded > 0 {
            break;
        }
        sleep(10).await;
    }
    assert!(decoded > 0, "b decodes a's camera");
    console_log!(
        "warm-up: attach -> first frame decoded {:.0} ms",
        now_ms() - t_attach
    );
    let inbound = b.link.inbound_video().await.unwrap();
    assert!(inbound.frame_width > 0, "{inbound:?}");
    // b still sends nothing: its gate is closed until it attaches.
    assert_eq!(frames_decoded(&a.link).await, 0);
    assert!(b.link.video_gated());

    a.link.close();
    b.link.close();
    media_a.stop();
}

/// A numeric field of the link's video stats of type `ty` (summed; 0 when absent).
async fn video_stat(link: &PeerLink, ty: &str, field: &str) -> f64 {
    let report = link.stats().await.unwrap();
    report
        .values()
        .into_iter()
        .filter_map(|v| v.ok())
        .filter(|s| {
            js_sys::Reflect::get(s, &"type".into())
                .unwrap()
                .as_string()
                .as_deref()
                == Some(ty)
                && js_sys::Reflect::get(s, &"kind".into())
                    .unwrap()
                    .as_string()
                    .as_deref()
                    == Some("video")
        })
        .map(|s| {
            js_sys::Reflect::get(&s, &field.into())
                .unwrap()
                .as_f64()
                .unwrap_or(0.0)
        })
        .sum()
}

/// A side that attached its camera before the first negotiation (a caller that captured
/// first, re-connecting) is not warmed up: the blank track never replaces the camera.
#[wasm_bindgen_test]
async fn warm_up_leaves_an_early_camera_alone() {
    warmup::start();
    wait_for("the warm-up worker", 3000.0, warmup::is_ready).await;
    let media_a = capture(&CaptureRequest::audio_video()).await.unwrap();
    let camera = media_a.video().unwrap();
    let (a, b) = (Side::new(), Side::new());
    a.link.prepare(&[Kind::Audio, Kind::Video]).unwrap();
    b.link.prepare(&[Kind::Audio, Kind::Video]).unwrap();
    a.link.attach(Kind::Video, &camera).await.unwrap();
    connect(&a, &b).await;
    assert!(!a.link.video_gated() && !a.link.warming_up());
    pump_until(&a, &b, "a's video reaches b", || {
        b.unmuted(Kind::Video) == 1
    })
    .await;
    sleep(300).await;
    assert_eq!(a.link.sender_track(Kind::Video).unwrap().id(), camera.id());
    assert!(frames_decoded(&b.link).await > 0);
    a.link.close();
    b.link.close();
    media_a.stop();
}

/// ICE restart on a live link (what the SDK does when a link loses its transport): a new offer
/// with fresh credentials, answered like any offer; media keeps flowing, no new remote tracks.
#[wasm_bindgen_test]
async fn restart_ice_renews_the_credentials_and_media_goes_on() {
    let (a, b, media_a, media_b) = connected_pair(true).await;
    let ufrag = |sdp: String| {
        sdp.lines()
            .find_map(|l| l.strip_prefix("a=ice-ufrag:").map(str::to_string))
            .unwrap()
    };
    let before = ufrag(a.link.raw().local_description().unwrap().sdp());
    let decoded_before = frames_decoded(&b.link).await;
    let offer = a.link.restart_ice().await.unwrap();
    assert_ne!(ufrag(offer.clone()), before, "fresh ICE credentials");
    // An unanswered restart offer is rolled back by the next one.
    let offer = a.link.restart_ice().await.unwrap();
    assert_eq!(a.link.signaling_state(), RtcSignalingState::HaveLocalOffer);
    let answer = b.link.accept_offer(&offer).await.unwrap();
    a.link.accept_answer(&answer).await.unwrap();
    // The new generation's candidates travel like the first ones.
    let t = now_ms();
    pump_until(&a, &b, "a second of candidate exchange", || {
        now_ms() - t > 1000.0
    })
    .await;
    assert!(a.connected() && b.connected());
    assert_eq!(a.link.signaling_state(), RtcSignalingState::Stable);
    assert_eq!(
        ufrag(b.link.raw().remote_description().unwrap().sdp()),
        ufrag(offer)
    );
    sleep(500).await;
    assert!(
        frames_decoded(&b.link).await > decoded_before,
        "video keeps coming"
    );
    assert_eq!(b.remote_tracks().len(), 2, "no new remote tracks");
    no_rejected(&a);
    a.link.close();
    b.link.close();
    assert!(matches!(
        a.link.restart_ice().await,
        Err(MediaError::Closed)
    ));
    media_a.stop();
    media_b.stop();
}

/// Per-peer video caps (larger group calls): applied without renegotiation, also when given
/// before the link negotiated, and lifted again.
#[wasm_bindgen_test]
async fn video_caps_scale_and_cap_the_sender_and_can_be_lifted() {
    let encoding = |link: &PeerLink, key: &str| -> JsValue {
        let t: web_sys::RtcRtpTransceiver = link
            .raw()
            .get_transceivers()
            .iter()
            .map(wasm_bindgen::JsCast::unchecked_into::<web_sys::RtcRtpTransceiver>)
            .find(|t| t.sender().track().is_some_and(|t| t.kind() == "video"))
            .unwrap();
        let params = t.sender().get_parameters();
        let encodings = js_sys::Reflect::get(&params, &"encodings".into()).unwrap();
        js_sys::Reflect::get(&js_sys::Array::from(&encodings).get(0), &key.into()).unwrap()
    };
    let capped = VideoCaps::for_peers(5);
    let (a, b, media_a, media_b) = connected_pair(true).await;
    let (na, _k) = count_negotiation_needed(&a.link);
    a.link.set_video_caps(capped).await.unwrap();
    assert_eq!(
        encoding(&a.link, "scaleResolutionDownBy").as_f64(),
        Some(2.0)
    );
    assert_eq!(encoding(&a.link, "maxBitrate").as_f64(), Some(300_000.0));
    let mut width = 0;
    for _ in 0..100 {
        width = b.link.inbound_video().await.unwrap().frame_width;
        if width == 320 {
            break;
        }
        sleep(50).await;
    }
    assert_eq!(width, 320, "b receives half the width");
    a.link.set_video_caps(VideoCaps::FULL).await.unwrap();
    assert_eq!(
        encoding(&a.link, "scaleResolutionDownBy").as_f64(),
        Some(1.0)
    );
    assert!(encoding(&a.link, "maxBitrate").is_undefined());
    assert_eq!(na.get(), 0, "no renegotiation");
    a.link.close();
    b.link.close();
    media_a.stop();
    media_b.stop();

    // Given before negotiating: applied by the negotiation.
    let media = capture(&CaptureRequest::audio_video()).await.unwrap();
    let (a, b) = (Side::new(), Side::new());
    a.link.add_local_media(&media).unwrap();
    a.link.set_video_caps(capped).await.unwrap();
    assert_eq!(a.link.video_caps(), capped);
    connect(&a, &b).await;
    pump_until(&a, &b, "connected", || a.connected() && b.connected()).await;
    assert_eq!(
        encoding(&a.link, "scaleResolutionDownBy").as_f64(),
        Some(2.0)
    );
    a.link.close();
    b.link.close();
    media.stop();
}
