//! Small `getStats` readers.
//!
//! The SDK's `onRTCStateReport` needs the selected candidate pair and
//! per-track counters; tests need "is video really decoded" and "which
//! addresses does the media use". Everything else stays reachable through
//! [`PeerLink::stats`].

use js_sys::Reflect;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::RtcStatsReport;

use crate::error::MediaError;
use crate::peer::PeerLink;

/// The ICE candidate pair the media flows over.
#[derive(Debug, Clone, PartialEq)]
pub struct CandidatePair {
    /// Local IP (or hostname for mDNS candidates).
    pub local_address: String,
    /// Local port.
    pub local_port: u16,
    /// `host`, `srflx`, `prflx` or `relay`.
    pub local_type: String,
    /// Remote IP.
    pub remote_address: String,
    /// Remote port.
    pub remote_port: u16,
    /// `host`, `srflx`, `prflx` or `relay`.
    pub remote_type: String,
    /// `udp` or `tcp`.
    pub protocol: String,
    /// Current round-trip time in milliseconds, once measured.
    pub rtt_ms: Option<f64>,
    /// Estimated available send bandwidth in bit/s, once estimated.
    pub available_outgoing_bitrate: Option<f64>,
}

/// Totals of the `inbound-rtp` video streams of a connection.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct InboundVideo {
    /// Frames decoded so far (all inbound video streams).
    pub frames_decoded: u64,
    /// Width of the last decoded frame (max over streams), 0 before the first.
    pub frame_width: u32,
    /// Height of the last decoded frame (max over streams), 0 before the first.
    pub frame_height: u32,
    /// Bytes received so far.
    pub bytes_received: u64,
}

fn get(obj: &JsValue, key: &str) -> JsValue {
    Reflect::get(obj, &JsValue::from_str(key)).unwrap_or(JsValue::UNDEFINED)
}
fn get_str(obj: &JsValue, key: &str) -> Option<String> {
    get(obj, key).as_string()
}
fn get_f64(obj: &JsValue, key: &str) -> Option<f64> {
    get(obj, key).as_f64()
}

fn entries(report: &RtcStatsReport) -> Vec<JsValue> {
    report.values().into_iter().filter_map(|v| v.ok()).collect()
}

impl PeerLink {
    /// `getStats()` of the whole connection.
    pub async fn stats(&self) -> Result<RtcStatsReport, MediaError> {
        if self.is_closed() {
            return Err(MediaError::Closed);
        }
        let report = JsFuture::from(self.raw().get_stats())
            .await
            .map_err(|e| MediaError::js("getStats", &e))?;
        Ok(report.unchecked_into())
    }

    /// The selected candidate pair, `None` while ICE has not connected.
    ///
    /// Uses the transport's `selectedCandidatePairId`, falling back to a
    /// nominated, succeeded pair for browsers that lack it.
    pub async fn selected_candidate_pair(&self) -> Result<Option<CandidatePair>, MediaError> {
        let report = self.stats().await?;
        let all = entries(&report);
        let by_id = |id: &str| {
            all.iter()
                .find(|s| get_str(s, "id").as_deref() == Some(id))
                .cloned()
        };
        let selected = all
            .iter()
            .filter(|s| get_str(s, "type").as_deref() == Some("transport"))
            .find_map(|t| get_str(t, "selectedCandidatePairId"))
            .and_then(|id| by_id(&id))
            .or_else(|| {
                all.iter()
                    .find(|s| {
                        get_str(s, "type").as_deref() == Some("candidate-pair")
                            && get(s, "nominated").as_bool() == Some(true)
                            && get_str(s, "state").as_deref() == Some("succeeded")
                    })
                    .cloned()
            });
        let Some(pair) = selected else {
            return Ok(None);
        };
        let (Some(local), Some(remote)) = (
            get_str(&pair, "localCandidateId").and_then(|id| by_id(&id)),
            get_str(&pair, "remoteCandidateId").and_then(|id| by_id(&id)),
        ) else {
            return Ok(None);
        };
        let addr = |c: &JsValue| {
            get_str(c, "address")
                .or_else(|| get_str(c, "ip"))
                .unwrap_or_default()
        };
        let port = |c: &JsValue| get_f64(c, "port").map(|p| p as u16).unwrap_or(0);
        Ok(Some(CandidatePair {
            local_address: addr(&local),
            local_port: port(&local),
            local_type: get_str(&local, "candidateType").unwrap_or_default(),
            remote_address: addr(&remote),
            remote_port: port(&remote),
            remote_type: get_str(&remote, "candidateType").unwrap_or_default(),
            protocol: get_str(&local, "protocol").unwrap_or_default(),
            rtt_ms: get_f64(&pair, "currentRoundTripTime").map(|s| s * 1000.0),
            available_outgoing_bitrate: get_f64(&pair, "availableOutgoingBitrate"),
        }))
    }

    /// Sums the `inbound-rtp` video counters: proof that remote video is
    /// actually received and decoded, independent of any element.
    pub async fn inbound_video(&self) -> Result<InboundVideo, MediaError> {
        let report = self.stats().await?;
        let mut out = InboundVideo::default();
        for s in entries(&report) {
            let is_video_in = get_str(&s, "type").as_deref() == Some("inbound-rtp")
                && get_str(&s, "kind").as_deref() == Some("video");
            if !is_video_in {
                continue;
            }
            out.frames_decoded += get_f64(&s, "framesDecoded").unwrap_or(0.0) as u64;
            out.bytes_received += get_f64(&s, "bytesReceived").unwrap_or(0.0) as u64;
            out.frame_width = out
                .frame_width
                .max(get_f64(&s, "frameWidth").unwrap_or(0.0) as u32);
            out.frame_height = out
                .frame_height
                .max(get_f64(&s, "frameHeight").unwrap_or(0.0) as u32);
        }
        Ok(out)
    }
}
