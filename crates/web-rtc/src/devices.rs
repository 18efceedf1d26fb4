//! Listing cameras, microphones and speakers (`enumerateDevices`).
//!
//! Backs RTCLib's `device.getCameras() / getMicrophones() / getSpeakers()`.
//! Labels are empty until the page has been granted capture permission once
//! (a browser privacy rule), so list after a first [`capture()`](crate::capture()).

use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{MediaDeviceInfo, MediaDeviceKind};

use crate::capture::media_devices;
use crate::error::MediaError;

/// Kind of a media device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeviceKind {
    /// A microphone.
    AudioInput,
    /// A camera.
    VideoInput,
    /// A speaker / headset output (usable as an audio sink).
    AudioOutput,
}

/// One entry of `enumerateDevices()`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    /// Pass as `{deviceId: {exact: id}}` in capture constraints.
    pub device_id: String,
    /// Devices of one physical product share a group id.
    pub group_id: String,
    /// Microphone, camera or speaker.
    pub kind: DeviceKind,
    /// Human-readable name; empty before capture permission was granted.
    pub label: String,
}

/// Lists the media devices, in browser order.
pub async fn enumerate_devices() -> Result<Vec<DeviceInfo>, MediaError> {
    let promise = media_devices()?
        .enumerate_devices()
        .map_err(|e| MediaError::js("enumerateDevices", &e))?;
    let list = JsFuture::from(promise)
        .await
        .map_err(|e| MediaError::js("enumerateDevices", &e))?;
    let list: js_sys::Array = list.unchecked_into();
    Ok(list
        .iter()
        .filter_map(|d| {
            let d: MediaDeviceInfo = d.unchecked_into();
            let kind = match d.kind() {
                MediaDeviceKind::Audioinput => DeviceKind::AudioInput,
                MediaDeviceKind::Videoinput => DeviceKind::VideoInput,
                MediaDeviceKind::Audiooutput => DeviceKind::AudioOutput,
                _ => return None,
            };
            Some(DeviceInfo {
                device_id: d.device_id(),
                group_id: d.group_id(),
                kind,
                label: d.label(),
            })
        })
        .collect())
}
