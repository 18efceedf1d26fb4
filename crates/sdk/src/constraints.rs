//! CallLib constraints (`{audio: {micphoneId, sampleRate}, video: {cameraId, frameRate,
//! resolution}}`) → getUserMedia `MediaTrackConstraints`.

use wasm_bindgen::JsValue;

use crate::js;

/// `RCFrameRate` → frames per second.
pub fn frame_rate(name: &str) -> Option<u32> {
    match name {
        "FPS_10" => Some(10),
        "FPS_15" => Some(15),
        "FPS_24" => Some(24),
        "FPS_30" => Some(30),
        _ => None,
    }
}

/// `RCResolution` (`W640_H480`) → (width, height).
pub fn resolution(name: &str) -> Option<(u32, u32)> {
    const KNOWN: [&str; 13] = [
        "W176_H132",
        "W176_H144",
        "W256_H144",
        "W320_H180",
        "W240_H240",
        "W320_H240",
        "W480_H360",
        "W640_H360",
        "W480_H480",
        "W640_H480",
        "W720_H480",
        "W1280_H720",
        "W1920_H1080",
    ];
    if !KNOWN.contains(&name) {
        return None;
    }
    // split at a char, not `split_once("_H")`: a string pattern pulls in core's two-way searcher.
    let (w, h) = name.strip_prefix('W')?.split_once('_')?;
    let h = h.strip_prefix('H')?;
    Some((w.parse().ok()?, h.parse().ok()?))
}

/// Audio `MediaTrackConstraints` for CallLib's `audio` constraints, if any were given.
pub fn audio(c: &JsValue) -> Option<JsValue> {
    let audio = js::get(c, "audio");
    if !audio.is_object() {
        return None;
    }
    let mut pairs = Vec::new();
    if let Some(id) = js::get_string(&audio, "micphoneId") {
        pairs.push(("deviceId", js::obj(&[("exact", id.into())])));
    }
    if let Some(rate) = js::get(&audio, "sampleRate").as_f64() {
        pairs.push(("sampleRate", rate.into()));
    }
    (!pairs.is_empty()).then(|| js::obj(&pairs))
}

/// Video `MediaTrackConstraints` for CallLib's `video` constraints, if any were given.
pub fn video(c: &JsValue) -> Option<JsValue> {
    let video = js::get(c, "video");
    if !video.is_object() {
        return None;
    }
    let mut pairs = Vec::new();
    if let Some(id) = js::get_string(&video, "cameraId") {
        pairs.push(("deviceId", js::obj(&[("exact", id.into())])));
    }
    if let Some((w, h)) = js::get_string(&video, "resolution").and_then(|r| resolution(&r)) {
        pairs.push(("width", js::obj(&[("ideal", w.into())])));
        pairs.push(("height", js::obj(&[("ideal", h.into())])));
    }
    if let Some(fps) = js::get_string(&video, "frameRate").and_then(|f| frame_rate(&f)) {
        pairs.push(("frameRate", js::obj(&[("ideal", fps.into())])));
    }
    if let Some(mode) = js::get_string(&video, "faceMode") {
        pairs.push(("facingMode", mode.into()));
    }
    (!pairs.is_empty()).then(|| js::obj(&pairs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_to_numbers() {
        assert_eq!(resolution("W640_H480"), Some((640, 480)));
        assert_eq!(resolution("W1920_H1080"), Some((1920, 1080)));
        assert_eq!(resolution("W641_H480"), None);
        assert_eq!(frame_rate("FPS_24"), Some(24));
        assert_eq!(frame_rate("FPS_60"), None);
    }
}
