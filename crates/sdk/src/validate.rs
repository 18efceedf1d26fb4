//! Parameter checks of the CallLib API (spec A.3, A.4, A.10). Failures throw (or reject) with
//! the message prefixes CallLib uses; every problem found is listed, one per line.

use wasm_bindgen::JsValue;

use crate::js;

/// Listener methods CallLib requires (spec A.4). The seed's docs also mark
/// `onAudioMuteChange` and `onVideoMuteChange` as required, but the legacy bundle never
/// checked them and apps written against it may leave them out: rcall keeps them optional so
/// those apps still start calls (README, "differences from CallLib").
const REQUIRED_LISTENER_KEYS: [&str; 6] = ["onRinging", "onAccept", "onHungup", "onMemberModify", "onMediaModify", "onTrackReady"];

/// Problems with a session listener, as a list of messages (empty = valid).
pub fn listener_problems(listener: &JsValue) -> Vec<String> {
    if !listener.is_object() {
        return vec!["listener must be an object".into()];
    }
    let missing: Vec<&str> = REQUIRED_LISTENER_KEYS.iter().copied().filter(|k| js::get_function(listener, k).is_none()).collect();
    if missing.is_empty() {
        Vec::new()
    } else {
        vec![["listener missing function -> \"", &missing.join(","), "\""].concat()]
    }
}

fn non_empty_string(v: &JsValue) -> bool {
    v.as_string().is_some_and(|s| !s.is_empty())
}

/// A non-empty array of non-empty strings, as `userIds` must be.
pub fn user_ids(v: &JsValue) -> Option<Vec<String>> {
    if !js_sys::Array::is_array(v) {
        return None;
    }
    let ids: Vec<String> = js_sys::Array::from(v).iter().map(|x| x.as_string().unwrap_or_default()).collect();
    (!ids.is_empty() && ids.iter().all(|s| !s.is_empty())).then_some(ids)
}

/// Checks `call()` / `callInGroup()` params (spec A.4); `group` adds `userIds`.
pub fn call_params(params: &JsValue, group: bool) -> Result<(), String> {
    let prefix = if group { "[RCCallClient callInGroup]" } else { "[RCCallClient call]" };
    if !params.is_object() {
        return Err([prefix, " params must be an object"].concat());
    }
    let mut problems = Vec::new();
    if !non_empty_string(&js::get(params, "targetId")) {
        problems.push("targetId must be a non-empty string".to_string());
    }
    let media = js::get(params, "mediaType");
    if js::is_present(&media) && !matches!(media.as_f64(), Some(v) if v == 1.0 || v == 2.0) {
        problems.push("mediaType must be RCCallMediaType.AUDIO (1) or RCCallMediaType.AUDIO_VIDEO (2)".into());
    }
    if group && user_ids(&js::get(params, "userIds")).is_none() {
        problems.push("userIds must be a non-empty array of non-empty strings".into());
    }
    problems.extend(listener_problems(&js::get(params, "listener")));
    problems.extend(constraint_problems(&js::get(params, "constraints")));
    if problems.is_empty() {
        Ok(())
    } else {
        Err([prefix, " ", &rtc_core::text::join(&problems, "\n")].concat())
    }
}

/// Checks `accept(constraints)` (spec A.10); `call()`/`callInGroup()` check theirs the same way
/// (CallLib did not; a bad profile failed later, inside getUserMedia).
pub fn constraints(c: &JsValue, prefix: &str) -> Result<(), String> {
    let problems = constraint_problems(c);
    if problems.is_empty() {
        Ok(())
    } else {
        Err([prefix, " ", &rtc_core::text::join(&problems, "\n")].concat())
    }
}

fn constraint_problems(c: &JsValue) -> Vec<String> {
    if !js::is_present(c) {
        return Vec::new();
    }
    if !c.is_object() {
        return vec!["constraints must be an object".into()];
    }
    let mut problems = Vec::new();
    let audio = js::get(c, "audio");
    if js::is_present(&audio) {
        let mic = js::get(&audio, "micphoneId");
        if js::is_present(&mic) && mic.as_string().is_none() {
            problems.push("audio.micphoneId must be a string".to_string());
        }
        let rate = js::get(&audio, "sampleRate");
        if js::is_present(&rate) && rate.as_f64().is_none() {
            problems.push("audio.sampleRate must be a number".to_string());
        }
    }
    let video = js::get(c, "video");
    if js::is_present(&video) {
        let cam = js::get(&video, "cameraId");
        if js::is_present(&cam) && cam.as_string().is_none() {
            problems.push("video.cameraId must be a string".to_string());
        }
        match js::get(&video, "frameRate").as_string() {
            Some(f) if crate::constraints::frame_rate(&f).is_some() => {}
            _ => problems.push("video.frameRate must be a RCFrameRate value".to_string()),
        }
        match js::get(&video, "resolution").as_string() {
            Some(r) if crate::constraints::resolution(&r).is_some() => {}
            _ => problems.push("video.resolution must be a RCResolution value".to_string()),
        }
    }
    problems
}

/// Checks the options of `installPlugin(RCCall.installer, options)` (spec A.3).
pub fn init_options(o: &JsValue) -> Result<(), String> {
    const PREFIX: &str = "[RCCallLib installer steup]";
    if !o.is_object() {
        return Err([PREFIX, " Initialization options must be an object"].concat());
    }
    let mut missing = Vec::new();
    if !js::get(o, "rtcClient").is_object() {
        missing.push("rtcClient");
    }
    if js::get_function(o, "onSession").is_none() {
        missing.push("onSession");
    }
    if js::get_function(o, "onSessionClose").is_none() {
        missing.push("onSessionClose");
    }
    let mut problems = Vec::new();
    if !missing.is_empty() {
        problems.push(["Initialization missing parameter -> \"", &missing.join(","), "\""].concat());
    }
    problems.extend(option_problems(o));
    if problems.is_empty() {
        Ok(())
    } else {
        Err([PREFIX, " ", &rtc_core::text::join(&problems, "\n")].concat())
    }
}

/// `RTCJoinType`: KICK 0, REFUSE 1, COEXIST 2.
const JOIN_TYPES: [f64; 3] = [0.0, 1.0, 2.0];
/// The engine's `LogLevel` values (`logLevel`, deprecated in 5.2.2).
pub const LOG_LEVELS: [f64; 7] = [0.0, 1.0, 2.0, 3.0, 4.0, 6.0, 1000.0];
/// `EnableLogL` (`logOutputLevel`): ERROR 1, WARN 2, INFO 3, DEBUG 4 — inverted against
/// `LogLevel` (spec A.3).
pub const LOG_OUTPUT_LEVELS: [f64; 4] = [1.0, 2.0, 3.0, 4.0];

/// The optional install options, each checked like the seed's installer does when present
/// (spec A.3). `onOfflineRecord` is not checked, as in CallLib.
fn option_problems(o: &JsValue) -> Vec<String> {
    let mut problems = Vec::new();
    for key in ["isAllowSubscribeRetry", "isAllowPublishRetry", "isOffCameraWhenVideoDisable", "isAllowDemotionGetStream"] {
        let v = js::get(o, key);
        if js::is_present(&v) && v.as_bool().is_none() {
            problems.push([key, " must be a boolean"].concat());
        }
    }
    let one_of = |key: &str, allowed: &[f64]| {
        let v = js::get(o, key);
        !js::is_present(&v) || v.as_f64().is_some_and(|n| allowed.contains(&n))
    };
    if !one_of("joinType", &JOIN_TYPES) {
        problems.push("joinType must be a RTCJoinType value (KICK 0, REFUSE 1, COEXIST 2)".into());
    }
    let lang = js::get(o, "lang");
    if js::is_present(&lang) && !matches!(lang.as_string().as_deref(), Some("zh" | "en")) {
        problems.push("lang must be a RCCallLanguage value ('zh' or 'en')".into());
    }
    if !one_of("logLevel", &LOG_LEVELS) {
        problems.push("logLevel must be a LogLevel value (0, 1, 2, 3, 4, 6 or 1000)".into());
    }
    let stdout = js::get(o, "logStdout");
    if js::is_present(&stdout) && !stdout.is_function() {
        problems.push("logStdout must be a function".into());
    }
    if !one_of("logOutputLevel", &LOG_OUTPUT_LEVELS) {
        problems.push("logOutputLevel must be a LogL value (ERROR 1, WARN 2, INFO 3, DEBUG 4)".into());
    }
    problems
}
