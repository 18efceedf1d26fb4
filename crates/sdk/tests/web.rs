//! The SDK's checks and shims in a real browser (headless Chromium): what a CallLib app gets
//! back for bad input, before any server is involved.
#![cfg(target_arch = "wasm32")]

use js_sys::{Function, Object, Reflect};
use rcall_sdk::{im_connect, im_init, install_call, install_rtc};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

fn obj(pairs: &[(&str, JsValue)]) -> JsValue {
    let o = Object::new();
    for (k, v) in pairs {
        Reflect::set(&o, &(*k).into(), v).unwrap();
    }
    o.into()
}

fn noop() -> JsValue {
    Function::new_no_args("").into()
}

fn message(err: JsValue) -> String {
    err.dyn_into::<js_sys::Error>().map(|e| String::from(e.message())).unwrap_or_default()
}

fn listener() -> JsValue {
    let keys = ["onRinging", "onAccept", "onHungup", "onMemberModify", "onMediaModify", "onTrackReady"];
    obj(&keys.iter().map(|k| (*k, noop())).collect::<Vec<_>>())
}

#[wasm_bindgen_test]
fn installer_lists_every_missing_option() {
    let err = install_call(obj(&[("onSession", noop())])).err().expect("must fail");
    assert_eq!(message(err), "[RCCallLib installer steup] Initialization missing parameter -> \"rtcClient,onSessionClose\"");
    let err = install_call(JsValue::from_str("nope")).err().expect("must fail");
    assert!(message(err).ends_with("Initialization options must be an object"));
}

#[wasm_bindgen_test]
async fn call_rejects_bad_params_with_every_problem() {
    let rtc: JsValue = install_rtc(JsValue::UNDEFINED).into();
    let client = install_call(obj(&[("rtcClient", rtc), ("onSession", noop()), ("onSessionClose", noop())])).expect("valid options");
    let bad = obj(&[("targetId", "".into()), ("mediaType", 3.into()), ("listener", obj(&[("onRinging", noop())]))]);
    let err = JsFuture::from(client.call(bad)).await.expect_err("rejects");
    let text = message(err);
    assert!(text.starts_with("[RCCallClient call] "), "{text}");
    assert!(text.contains("targetId"), "{text}");
    assert!(text.contains("mediaType"), "{text}");
    assert!(text.contains("onAccept,onHungup,onMemberModify,onMediaModify,onTrackReady"), "{text}");
    assert_eq!(text.lines().count(), 3, "{text}");

    let group = obj(&[("targetId", "g1".into()), ("userIds", js_sys::Array::of1(&"".into()).into()), ("listener", listener())]);
    let err = JsFuture::from(client.call_in_group(group)).await.expect_err("rejects");
    assert!(message(err).starts_with("[RCCallClient callInGroup] userIds"));

    // Constraints are checked like accept()'s.
    let bad_video = obj(&[("video", obj(&[("frameRate", "FPS_99".into()), ("resolution", "W640_H480".into())]))]);
    let params = obj(&[("targetId", "bob".into()), ("listener", listener()), ("constraints", bad_video)]);
    let err = JsFuture::from(client.call(params)).await.expect_err("rejects");
    assert_eq!(message(err), "[RCCallClient call] video.frameRate must be a RCFrameRate value");

    // Valid params while not connected: a code, not an exception.
    let ok = obj(&[("targetId", "bob".into()), ("listener", listener())]);
    let res = JsFuture::from(client.call(ok)).await.expect("resolves");
    assert_eq!(Reflect::get(&res, &"code".into()).unwrap(), JsValue::from(53201));
}

#[wasm_bindgen_test]
async fn connect_reports_imlib_codes() {
    let res = JsFuture::from(im_connect("token".into())).await.expect("never rejects");
    assert_eq!(Reflect::get(&res, &"code".into()).unwrap(), JsValue::from(33001), "not initialised yet");
    assert!(im_init(obj(&[("logLevel", 1.into())])).is_err(), "appkey is required");
    // A navi nobody listens on: the connection fails promptly with a network code.
    im_init(obj(&[("appkey", "k".into()), ("navi", "http://127.0.0.1:9".into())])).unwrap();
    let res = JsFuture::from(im_connect("token".into())).await.expect("never rejects");
    assert_eq!(Reflect::get(&res, &"isOk".into()).unwrap(), JsValue::FALSE);
    assert_eq!(Reflect::get(&res, &"code".into()).unwrap(), JsValue::from(30002));
    let res = JsFuture::from(im_connect(JsValue::from(5))).await.expect("never rejects");
    assert_eq!(Reflect::get(&res, &"code".into()).unwrap(), JsValue::from(33003));
}

#[wasm_bindgen_test]
async fn a_navi_list_is_tried_in_turn_and_a_bad_entry_throws_at_init() {
    // Invalid entries: init() throws, naming the entry.
    let bad = js_sys::Array::of2(&"http://127.0.0.1:9".into(), &"not a url".into());
    let err = im_init(obj(&[("appkey", "k".into()), ("navi", bad.into())])).expect_err("throws");
    assert!(message(err).contains("navi entry \"not a url\""));
    let err = im_init(obj(&[("appkey", "k".into()), ("navigators", js_sys::Array::of1(&5.into()).into())])).expect_err("throws");
    assert!(message(err).contains("navigators[0] must be a string"));
    // Two URLs nobody listens on (a comma-separated string): both are tried, then the network code.
    im_init(obj(&[("appkey", "k".into()), ("navi", "http://127.0.0.1:9, 127.0.0.1:7".into())])).unwrap();
    let res = JsFuture::from(im_connect("token".into())).await.expect("never rejects");
    assert_eq!(Reflect::get(&res, &"code".into()).unwrap(), JsValue::from(30002));
}
