//! Browser tests: real headless Chromium with fake camera/microphone
//! (`webdriver.json`), two `PeerLink`s in one page connected over loopback.
//!
//! Run (from this crate's directory):
//! ```sh
//! CARGO_TARGET_DIR=/work/target-webrtc cargo test --target wasm32-unknown-unknown --no-run
//! CARGO_TARGET_DIR=/work/target-webrtc CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner \
//!   CHROMEDRIVER=/usr/bin/chromedriver unshare -n bash -c 'ip link set lo up; cargo test --offline --target wasm32-unknown-unknown'
//! ```
#![cfg(target_arch = "wasm32")]

mod common;

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use common::*;
use js_sys::Reflect;
use wasm_bindgen_test::*;
use web_rtc::*;
use web_sys::{MediaStreamTrack, MediaStreamTrackState, RtcPeerConnectionState};

wasm_bindgen_test_configure!(run_in_browser);

// ---------------------------------------------------------------- capture

#[wasm_bindgen_test]
async fn capture_audio_video_gives_live_tracks_and_stop_ends_them() {
    let media = capture(&CaptureRequest::audio_video())
        .await
        .expect("capture");
    let audio = media.audio().expect("audio track");
    let video = media.video().expect("video track");
    assert_eq!(track_kind(&audio), Kind::Audio);
    assert_eq!(track_kind(&video), Kind::Video);
    assert_eq!(media.tracks().len(), 2);
    assert_eq!(track_kind(&media.tracks()[0]), Kind::Audio, "audio first");
    assert!(is_live(&audio) && is_live(&video));
    assert_eq!(media.stream().get_tracks().length(), 2);

    media.stop();
    assert_eq!(audio.ready_state(), MediaStreamTrackState::Ended);
    assert_eq!(video.ready_state(), MediaStreamTrackState::Ended);
}

#[wasm_bindgen_test]
async fn capture_default_video_profile_is_640x480() {
    let media = capture(&CaptureRequest::video_only())
        .await
        .expect("capture");
    assert!(media.audio().is_none());
    let settings = media.video().unwrap().get_settings();
    let w = Reflect::get(&settings, &"width".into()).unwrap().as_f64();
    let h = Reflect::get(&settings, &"height".into()).unwrap().as_f64();
    assert_eq!((w, h), (Some(640.0), Some(480.0)));
    media.stop();
}

fn frame_rate(track: &MediaStreamTrack) -> Option<f64> {
    Reflect::get(&track.get_settings(), &"frameRate".into())
        .unwrap()
        .as_f64()
}

#[wasm_bindgen_test]
async fn capture_opens_the_camera_fast_then_settles_once_it_is_sent() {
    // Default profile (ideal 15 fps): opened faster (ideal FAST_START_FRAME_RATE: the fake
    // camera's native 20 fps) and kept so while nothing sends it (a caller ringing)...
    let media = capture(&CaptureRequest::audio_video())
        .await
        .expect("capture");
    let video = media.video().unwrap();
    let opened = frame_rate(&video).expect("frameRate setting");
    assert!(
        opened > 15.0 && opened <= f64::from(capture::FAST_START_FRAME_RATE),
        "opened at {opened} fps"
    );
    sleep(capture::SETTLE_AFTER_MS + 300).await;
    assert_eq!(
        frame_rate(&video),
        Some(opened),
        "settled before being sent"
    );
    // ...then settled at 15 fps once a link sends it: same device, same live track.
    let (a, b) = (Side::new(), Side::new());
    a.link
        .prepare(&[Kind::Audio, Kind::Video])
        .expect("prepare");
    b.link
        .prepare(&[Kind::Audio, Kind::Video])
        .expect("prepare");
    connect(&a, &b).await;
    a.link.attach(Kind::Video, &video).await.expect("attach");
    let sent_at = now_ms();
    wait_for("the camera settles at 15 fps", 5_000.0, || {
        frame_rate(&video) == Some(15.0)
    })
    .await;
    assert!(
        now_ms() - sent_at >= f64::from(capture::SETTLE_AFTER_MS) - 50.0,
        "settled too early"
    );
    assert!(is_live(&video));
    a.link.close();
    b.link.close();
    media.stop();

    // An app's exact frame rate is used as given, from the start.
    let mut req = CaptureRequest::video_only();
    req.video_constraints = Some(obj(&[("frameRate", obj(&[("exact", 10.into())]))]));
    let media = capture(&req).await.expect("capture exact");
    assert_eq!(frame_rate(&media.video().unwrap()), Some(10.0));
    media.stop();
}

#[wasm_bindgen_test]
async fn a_fast_started_camera_settles_once_an_sfu_publisher_sends_it() {
    // The SFU publishing path (`add_sender`) settles the camera like `attach` does: without it
    // SFU publishers kept encoding at the fast-start rate (bench/mesh --sfu: 16–20 fps decoded
    // where FPS_15 was asked).
    let media = capture(&CaptureRequest::audio_video())
        .await
        .expect("capture");
    let video = media.video().unwrap();
    let opened = frame_rate(&video).expect("frameRate setting");
    assert!(opened > 15.0, "opened at {opened} fps");
    let side = Side::new();
    side.link
        .add_sender(&video, &media.stream(), &[])
        .expect("add_sender");
    wait_for("the camera settles at 15 fps", 5_000.0, || {
        frame_rate(&video) == Some(15.0)
    })
    .await;
    assert!(is_live(&video));
    side.link.close();
    media.stop();
}

#[wasm_bindgen_test]
async fn capture_audio_only_has_no_video() {
    let media = capture(&CaptureRequest::audio_only())
        .await
        .expect("capture");
    assert!(media.audio().is_some());
    assert!(media.video().is_none());
    assert_eq!(media.tracks().len(), 1);
    media.stop();
}

#[wasm_bindgen_test]
async fn capture_nothing_is_invalid_argument() {
    let err = capture(&CaptureRequest::default()).await.unwrap_err();
    assert!(matches!(err, MediaError::InvalidArgument(_)), "{err:?}");
}

#[wasm_bindgen_test]
async fn capture_unknown_device_is_overconstrained() {
    let req = CaptureRequest {
        video: true,
        video_constraints: Some(obj(&[(
            "deviceId",
            obj(&[("exact", "no-such-camera".into())]),
        )])),
        ..Default::default()
    };
    let err = capture(&req).await.unwrap_err();
    match &err {
        MediaError::Overconstrained { constraint, .. } => assert_eq!(constraint, "deviceId"),
        other => panic!("expected Overconstrained, got {other:?}"),
    }
    // The message is actionable.
    assert!(err.to_string().contains("deviceId"), "{err}");
}

#[wasm_bindgen_test]
async fn capture_impossible_resolution_is_overconstrained() {
    let req = CaptureRequest {
        video: true,
        video_constraints: Some(obj(&[("width", obj(&[("exact", 100_000.into())]))])),
        ..Default::default()
    };
    match capture(&req).await {
        Err(MediaError::Overconstrained { constraint, .. }) => assert_eq!(constraint, "width"),
        other => panic!("expected Overconstrained, got {other:?}"),
    }
}

#[wasm_bindgen_test]
async fn enumerate_devices_lists_fake_devices_usable_by_id() {
    let first = capture(&CaptureRequest::audio_only()).await.unwrap();
    first.stop();
    let devices = enumerate_devices().await.expect("enumerate");
    let cam = devices
        .iter()
        .find(|d| d.kind == DeviceKind::VideoInput)
        .expect("a camera");
    assert!(devices.iter().any(|d| d.kind == DeviceKind::AudioInput));
    let req = CaptureRequest {
        video: true,
        video_constraints: Some(obj(&[(
            "deviceId",
            obj(&[("exact", cam.device_id.as_str().into())]),
        )])),
        ..Default::default()
    };
    let media = capture(&req).await.expect("capture by deviceId");
    assert!(media.video().is_some());
    media.stop();
}

// ---------------------------------------------------------------- peer

#[wasm_bindgen_test]
async fn two_links_exchange_audio_and_video_and_play_it() {
    let media_a = capture(&CaptureRequest::audio_video()).await.unwrap();
    let media_b = capture(&CaptureRequest::audio_video()).await.unwrap();
    let a = Side::new();
    let b = Side::new();
    assert_eq!(a.link.add_local_media(&media_a).unwrap().len(), 2);
    assert_eq!(b.link.add_local_media(&media_b).unwrap().len(), 2);

    let t0 = connect(&a, &b).await;
    pump_until(&a, &b, "remote tracks and connected", || {
        a.remote_tracks().len() == 2
            && b.remote_tracks().len() == 2
            && a.connected()
            && b.connected()
    })
    .await;
    no_rejected(&a);
    no_rejected(&b);

    // Both sides got an audio and a video track, grouped in the sender's stream.
    for side in [&a, &b] {
        let (at, astream) = side.remote_track(Kind::Audio).expect("remote audio");
        let (vt, vstream) = side.remote_track(Kind::Video).expect("remote video");
        assert!(is_live(&at) && is_live(&vt));
        assert_eq!(astream.id(), vstream.id(), "one remote stream per user");
    }
    assert_eq!(
        b.remote_track(Kind::Audio).unwrap().1.id(),
        media_a.stream().id(),
        "the remote stream id is the sender's stream id"
    );

    // b shows a's video from the track alone (a new single-track stream).
    let (video_track, video_stream) = b.remote_track(Kind::Video).unwrap();
    let el_b = video_element();
    let playback = play(&video_track, Some(&el_b))
        .await
        .expect("play video track");
    assert!(!playback.is_internal());
    wait_for("remote video frames", 5000.0, || el_b.video_width() > 0).await;
    let first_frame_ms = now_ms() - t0;
    console_log!("offer -> first remote frame: {first_frame_ms:.0} ms");
    // a shows b's video from the remote stream (ev.streams[0]).
    let (_, a_stream) = a.remote_track(Kind::Video).unwrap();
    let el_a = video_element();
    let playback_a = play(&a_stream, Some(&el_a))
        .await
        .expect("play remote stream");
    wait_for("remote video frames on a", 5000.0, || {
        el_a.video_width() > 0
    })
    .await;

    // Frames keep advancing.
    let q1 = el_b.get_video_playback_quality().total_video_frames();
    let ct1 = el_b.current_time();
    sleep(500).await;
    let q2 = el_b.get_video_playback_quality().total_video_frames();
    let ct2 = el_b.current_time();
    assert!(q2 > q1, "frames advance: {q1} -> {q2}");
    assert!(ct2 > ct1, "currentTime advances: {ct1} -> {ct2}");

    // Stats agree: video decoded, over loopback.
    let inbound = b.link.inbound_video().await.unwrap();
    assert!(
        inbound.frames_decoded > 0 && inbound.frame_width > 0,
        "{inbound:?}"
    );
    let pair = b
        .link
        .selected_candidate_pair()
        .await
        .unwrap()
        .expect("a selected pair");
    console_log!("selected pair: {pair:?}");
    assert_eq!(pair.local_type, "host");

    // Remote audio without an element plays through an internal Audio element.
    let (audio_track, _) = b.remote_track(Kind::Audio).unwrap();
    let audio = play(&audio_track, None)
        .await
        .expect("play audio without element");
    assert!(audio.is_internal());
    assert!(!audio.element().paused());
    audio.stop();
    assert!(audio.element().src_object().is_none());

    // Video without an element is the 53021 case.
    let err = play(&video_track, None).await.unwrap_err();
    assert_eq!(err, MediaError::MissingElement);
    let err = play(&video_stream, None).await.unwrap_err();
    assert_eq!(err, MediaError::MissingElement);
    // Volume out of range is an argument error (50001).
    let opts = PlayOptions {
        volume: Some(101),
        ..Default::default()
    };
    let err = play_with(&audio_track, None, &opts).await.unwrap_err();
    assert!(matches!(err, MediaError::InvalidArgument(_)), "{err:?}");

    playback.stop();
    assert!(el_b.src_object().is_none());
    playback_a.stop();

    // close(): state closed, no events afterwards, further calls fail cleanly.
    a.link.close();
    assert!(a.link.is_closed());
    assert_eq!(a.link.connection_state(), RtcPeerConnectionState::Closed);
    let a_events = a.events.borrow().len();
    b.link.close();
    let b_events = b.events.borrow().len();
    sleep(300).await;
    assert_eq!(a.events.borrow().len(), a_events, "no events after close");
    assert_eq!(b.events.borrow().len(), b_events, "no events after close");
    assert_eq!(a.link.create_offer().await.unwrap_err(), MediaError::Closed);
    let c = Candidate {
        candidate: String::new(),
        sdp_mid: Some("0".into()),
        sdp_m_line_index: Some(0),
    };
    assert_eq!(
        a.link.add_remote_candidate(c).await.unwrap_err(),
        MediaError::Closed
    );
    assert_eq!(
        a.link.add_local_media(&media_a).unwrap_err(),
        MediaError::Closed
    );
    a.link.close(); // idempotent

    media_a.stop();
    media_b.stop();
    el_a.remove();
    el_b.remove();
}

#[wasm_bindgen_test]
async fn audio_only_offerer_can_still_receive_video() {
    let media_a = capture(&CaptureRequest::audio_only()).await.unwrap();
    let media_b = capture(&CaptureRequest::audio_video()).await.unwrap();
    let a = Side::new();
    let b = Side::new();
    a.link.add_local_media(&media_a).unwrap();
    a.link.ensure_receive(Kind::Video).unwrap();
    a.link.ensure_receive(Kind::Audio).unwrap(); // already there: no-op
    assert_eq!(a.link.raw().get_transceivers().length(), 2);
    b.link.add_local_media(&media_b).unwrap();

    connect(&a, &b).await;
    pump_until(&a, &b, "a receives b's audio and video", || {
        a.remote_tracks().len() == 2 && b.remote_tracks().len() == 1 && a.connected()
    })
    .await;
    assert!(a.remote_track(Kind::Video).is_some());
    assert!(b.remote_track(Kind::Video).is_none(), "a sends no video");
    assert!(b.remote_track(Kind::Audio).is_some());

    let el = video_element();
    let (vt, _) = a.remote_track(Kind::Video).unwrap();
    let playback = play(&vt, Some(&el)).await.unwrap();
    wait_for("video frames", 5000.0, || el.video_width() > 0).await;
    playback.stop();
    el.remove();

    // replace_track: swap b's camera for a fresh capture without renegotiation.
    let cam2 = capture(&CaptureRequest::video_only()).await.unwrap();
    assert!(b
        .link
        .replace_track(Kind::Video, cam2.video().as_ref())
        .await
        .unwrap());

    a.link.close();
    b.link.close();
    media_a.stop();
    media_b.stop();
    cam2.stop();
}

#[wasm_bindgen_test]
async fn close_during_gathering_delivers_no_more_events() {
    let media = capture(&CaptureRequest::audio_video()).await.unwrap();
    let a = Side::new();
    a.link.add_local_media(&media).unwrap();
    a.link.create_offer().await.unwrap(); // gathering starts now
    a.link.close();
    let n = a.events.borrow().len();
    sleep(500).await;
    assert_eq!(a.events.borrow().len(), n, "no events after close");
    assert_eq!(a.link.connection_state(), RtcPeerConnectionState::Closed);
    media.stop();
}

#[wasm_bindgen_test]
async fn close_from_inside_the_callback_is_safe() {
    let media = capture(&CaptureRequest::audio_only()).await.unwrap();
    let slot: Rc<RefCell<Option<PeerLink>>> = Rc::new(RefCell::new(None));
    let calls = Rc::new(Cell::new(0u32));
    let (slot2, calls2) = (slot.clone(), calls.clone());
    // The callback holds a clone of the link (a cycle that close() must break).
    let link = PeerLink::new(&PeerConfig::default(), move |ev| {
        if let PeerEvent::LocalCandidate(_) = ev {
            calls2.set(calls2.get() + 1);
            if let Some(link) = slot2.borrow().as_ref() {
                link.close();
            }
        }
    })
    .unwrap();
    *slot.borrow_mut() = Some(link.clone());
    link.add_local_media(&media).unwrap();
    link.create_offer().await.unwrap();
    wait_for("the first candidate", 5000.0, || calls.get() > 0).await;
    sleep(300).await;
    assert_eq!(
        calls.get(),
        1,
        "closed in the first callback, no more events"
    );
    assert!(link.is_closed());
    slot.borrow_mut().take();
    media.stop();
}

#[wasm_bindgen_test]
async fn dropping_the_last_handle_closes_the_connection() {
    let link = PeerLink::new(&PeerConfig::default(), |_| {}).unwrap();
    let pc = link.raw().clone();
    let clone = link.clone();
    drop(link);
    assert_ne!(
        pc.connection_state(),
        RtcPeerConnectionState::Closed,
        "a clone is alive"
    );
    drop(clone);
    assert_eq!(pc.connection_state(), RtcPeerConnectionState::Closed);
}

#[wasm_bindgen_test]
async fn bad_configuration_and_bad_sdp_are_errors() {
    let config = PeerConfig {
        ice_servers: vec![IceServer {
            urls: vec!["turn:127.0.0.1:3478".into()],
            username: None,
            credential: None,
        }],
        ice_transport_policy_relay: true,
    };
    match PeerLink::new(&config, |_| {}) {
        Err(MediaError::Js { op, name, .. }) => {
            assert_eq!(op, "new RTCPeerConnection");
            assert_eq!(name, "InvalidAccessError");
        }
        other => panic!("expected a Js error, got {other:?}"),
    }
    let ok = PeerConfig {
        ice_servers: vec![IceServer {
            urls: vec!["turn:127.0.0.1:3478?transport=udp".into()],
            username: Some("1:u".into()),
            credential: Some("secret".into()),
        }],
        ice_transport_policy_relay: true,
    };
    let link = PeerLink::new(&ok, |_| {}).expect("TURN config with credentials");
    let err = link.accept_offer("v=0 this is not sdp").await.unwrap_err();
    assert!(
        matches!(&err, MediaError::Js { op, .. } if *op == "setRemoteDescription(offer)"),
        "{err:?}"
    );
    link.close();
}
