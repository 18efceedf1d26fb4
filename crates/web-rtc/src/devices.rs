//! Listing cameras, microphones and speakers (`enumerateDevices`).
//!
//! Backs RTCLib's `device.getCameras() / getMicrophones() / getSpeakers()`.
//! Labels are empty until the page has been granted capture permission once
//! (a browser privacy rule), so list after a first [`capture()`](crate::capture()).
//! [`watch_devices`] reports plugged / unplugged devices (`devicechange`).

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{Event, MediaDeviceInfo, MediaDeviceKind, MediaDevices};

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

async fn of_kind(kind: DeviceKind) -> Result<Vec<DeviceInfo>, MediaError> {
    Ok(enumerate_devices()
        .await?
        .into_iter()
        .filter(|d| d.kind == kind)
        .collect())
}

/// The cameras (RTCLib `device.getCameras()`).
pub async fn cameras() -> Result<Vec<DeviceInfo>, MediaError> {
    of_kind(DeviceKind::VideoInput).await
}

/// The microphones (RTCLib `device.getMicrophones()`).
pub async fn microphones() -> Result<Vec<DeviceInfo>, MediaError> {
    of_kind(DeviceKind::AudioInput).await
}

/// The audio outputs (RTCLib `device.getSpeakers()`); may be empty in
/// browsers without output selection (Firefox before 116, Safari).
pub async fn speakers() -> Result<Vec<DeviceInfo>, MediaError> {
    of_kind(DeviceKind::AudioOutput).await
}

type DeviceCallback = Box<dyn FnMut(Vec<DeviceInfo>)>;

/// A subscription to device changes, from [`watch_devices`]. Dropping it
/// removes the listener; a listing already in flight is then discarded.
pub struct DeviceWatch {
    devices: MediaDevices,
    listener: Closure<dyn FnMut(Event)>,
    alive: Rc<Cell<bool>>,
}

impl std::fmt::Debug for DeviceWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceWatch").finish_non_exhaustive()
    }
}

impl Drop for DeviceWatch {
    fn drop(&mut self) {
        self.alive.set(false);
        let _ = self.devices.remove_event_listener_with_callback(
            "devicechange",
            self.listener.as_ref().unchecked_ref(),
        );
    }
}

/// Calls `on_change` with the fresh device list each time the browser
/// fires `devicechange` on `navigator.mediaDevices` (a device was plugged
/// or unplugged, or permission revealed labels), until the returned handle
/// is dropped.
///
/// It uses `addEventListener`, so several watchers coexist and an
/// `ondevicechange` set by the app is left alone. Events often come in
/// bursts; when listings overlap, only the newest one is delivered. A
/// listing that fails is skipped (the next event lists again).
pub fn watch_devices(
    on_change: impl FnMut(Vec<DeviceInfo>) + 'static,
) -> Result<DeviceWatch, MediaError> {
    let devices = media_devices()?;
    let alive = Rc::new(Cell::new(true));
    let callback: Rc<RefCell<DeviceCallback>> = Rc::new(RefCell::new(Box::new(on_change)));
    let latest = Rc::new(Cell::new(0u64));
    let a = alive.clone();
    let listener = Closure::<dyn FnMut(Event)>::new(move |_: Event| {
        let seq = latest.get() + 1;
        latest.set(seq);
        let (alive, callback, latest) = (a.clone(), callback.clone(), latest.clone());
        wasm_bindgen_futures::spawn_local(async move {
            let Ok(list) = enumerate_devices().await else {
                return;
            };
            if !alive.get() || latest.get() != seq {
                return;
            }
            // A re-entrant event cannot get here while the callback runs
            // (single thread, the callback is synchronous), but stay safe.
            if let Ok(mut f) = callback.try_borrow_mut() {
                f(list);
            }
        });
    });
    devices
        .add_event_listener_with_callback("devicechange", listener.as_ref().unchecked_ref())
        .map_err(|e| MediaError::js("addEventListener(devicechange)", &e))?;
    Ok(DeviceWatch {
        devices,
        listener,
        alive,
    })
}
