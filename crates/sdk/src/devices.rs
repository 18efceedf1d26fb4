//! `RCRTC.device`: listing cameras, microphones and speakers, and following changes.

use wasm_bindgen::prelude::*;

use crate::js;

/// `RCRTC.device.getCameras()` / `getMicrophones()` / `getSpeakers()`: `kind` is
/// `"videoinput"`, `"audioinput"` or `"audiooutput"`. Resolves `[{deviceId, groupId, kind, label}]`.
#[wasm_bindgen]
pub fn device_list(kind: String) -> js_sys::Promise {
    js::promise(async move {
        let list = web_rtc::enumerate_devices().await.map_err(|e| js::js_error(&e.message()))?;
        Ok(devices_js(list.into_iter().filter(|d| device_kind(d) == kind)))
    })
}

fn device_kind(d: &web_rtc::DeviceInfo) -> &'static str {
    match d.kind {
        web_rtc::DeviceKind::AudioInput => "audioinput",
        web_rtc::DeviceKind::VideoInput => "videoinput",
        web_rtc::DeviceKind::AudioOutput => "audiooutput",
    }
}

fn devices_js(list: impl Iterator<Item = web_rtc::DeviceInfo>) -> JsValue {
    let array: js_sys::Array = list
        .map(|d| {
            js::obj(&[
                ("deviceId", d.device_id.as_str().into()),
                ("groupId", d.group_id.as_str().into()),
                ("kind", device_kind(&d).into()),
                ("label", d.label.as_str().into()),
            ])
        })
        .collect();
    array.into()
}

/// `RCRTC.device.onDeviceChange(callback)` (rcall extension): `callback(devices)` whenever a
/// camera, microphone or speaker comes or goes. Call `stop()` on the result to stop.
#[wasm_bindgen]
pub fn watch_devices(callback: js_sys::Function) -> Result<DeviceWatcher, JsValue> {
    let watch = web_rtc::watch_devices(move |list| {
        js::call_function(&callback, "onDeviceChange", &[devices_js(list.into_iter())]);
    })
    .map_err(|e| js::js_error(&e.message()))?;
    Ok(DeviceWatcher { watch: std::cell::RefCell::new(Some(watch)) })
}

#[wasm_bindgen]
pub struct DeviceWatcher {
    watch: std::cell::RefCell<Option<web_rtc::DeviceWatch>>,
}

#[wasm_bindgen]
impl DeviceWatcher {
    pub fn stop(&self) {
        self.watch.borrow_mut().take();
    }
}
