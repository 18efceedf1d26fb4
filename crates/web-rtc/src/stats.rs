//! `getStats` readers.
//!
//! * [`StatsSampler`] builds CallLib's `IRCRTCStateReport` ([`StateReport`],
//!   for `onRTCStateReport`): the selected candidate pair and one
//!   [`TrackStat`] per sent and received track. Bitrates and loss rates are
//!   rates over the interval since the previous sample, hence the sampler
//!   keeps the previous sample's counters.
//! * [`PeerLink::selected_candidate_pair`] and [`PeerLink::inbound_video`]
//!   answer "which addresses does the media use" and "is video really
//!   decoded" (for tests and diagnostics).
//!
//! Everything else stays reachable through [`PeerLink::stats`].

use js_sys::{Object, Reflect};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{RtcRtpTransceiver, RtcStatsReport};

use crate::error::MediaError;
use crate::peer::PeerLink;
use crate::track::Kind;

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

fn address(candidate: &JsValue) -> String {
    get_str(candidate, "address")
        .or_else(|| get_str(candidate, "ip"))
        .unwrap_or_default()
}

fn port(candidate: &JsValue) -> u16 {
    get_f64(candidate, "port").map(|p| p as u16).unwrap_or(0)
}

/// One `getStats()` result, indexed by stat id.
struct Entries {
    all: Vec<JsValue>,
    by_id: Vec<(String, usize)>,
}

impl Entries {
    fn new(report: &RtcStatsReport) -> Entries {
        let all = entries(report);
        let by_id = all
            .iter()
            .enumerate()
            .filter_map(|(i, s)| get_str(s, "id").map(|id| (id, i)))
            .collect();
        Entries { all, by_id }
    }

    fn get(&self, id: &str) -> Option<&JsValue> {
        self.by_id
            .iter()
            .find(|(k, _)| k == id)
            .map(|&(_, i)| &self.all[i])
    }

    /// The stat that `stat[key]` names by id (e.g. `mediaSourceId`).
    fn linked(&self, stat: &JsValue, key: &str) -> Option<&JsValue> {
        get_str(stat, key).and_then(|id| self.get(&id))
    }

    fn of_type<'a>(&'a self, ty: &'a str) -> impl Iterator<Item = &'a JsValue> + 'a {
        self.all
            .iter()
            .filter(move |s| get_str(s, "type").as_deref() == Some(ty))
    }

    /// The selected candidate pair and its local and remote candidates.
    ///
    /// Uses the transport's `selectedCandidatePairId`, falling back to a
    /// nominated, succeeded pair for browsers that lack it.
    fn selected_pair(&self) -> Option<(&JsValue, &JsValue, &JsValue)> {
        let pair = self
            .of_type("transport")
            .find_map(|t| self.linked(t, "selectedCandidatePairId"))
            .or_else(|| {
                self.of_type("candidate-pair").find(|s| {
                    get(s, "nominated").as_bool() == Some(true)
                        && get_str(s, "state").as_deref() == Some("succeeded")
                })
            })?;
        let local = self.linked(pair, "localCandidateId")?;
        let remote = self.linked(pair, "remoteCandidateId")?;
        Some((pair, local, remote))
    }
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
        let all = Entries::new(&report);
        let Some((pair, local, remote)) = all.selected_pair() else {
            return Ok(None);
        };
        Ok(Some(CandidatePair {
            local_address: address(local),
            local_port: port(local),
            local_type: get_str(local, "candidateType").unwrap_or_default(),
            remote_address: address(remote),
            remote_port: port(remote),
            remote_type: get_str(remote, "candidateType").unwrap_or_default(),
            protocol: get_str(local, "protocol").unwrap_or_default(),
            rtt_ms: get_f64(pair, "currentRoundTripTime").map(|s| s * 1000.0),
            available_outgoing_bitrate: get_f64(pair, "availableOutgoingBitrate"),
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

/// CallLib's `IRCCandidatePairStat`: the ICE candidate pair in use.
#[derive(Debug, Clone, PartialEq)]
pub struct CandidatePairStat {
    /// Local IP (`IP`).
    pub ip: String,
    /// Local port.
    pub port: u16,
    /// Local network type (`wifi`, `ethernet`, `cellular`, ...), when the
    /// browser tells (Chromium mostly does not any more).
    pub network_type: Option<String>,
    /// Remote IP (`remoteIP`).
    pub remote_ip: String,
    /// Remote port.
    pub remote_port: u16,
    /// `udp` or `tcp`.
    pub protocol: String,
    /// Sent over the pair since the previous sample, in kbit/s (0 on the
    /// first sample).
    pub bitrate_send: f64,
    /// Received over the pair since the previous sample, in kbit/s (0 on the
    /// first sample).
    pub bitrate_recv: f64,
    /// Current round-trip time in ms, once measured.
    pub rtt: Option<f64>,
    /// Estimated available send bandwidth, bit/s.
    pub available_outgoing_bitrate: Option<f64>,
    /// Estimated available receive bandwidth, bit/s (Chromium does not
    /// report it: `None`).
    pub available_incoming_bitrate: Option<f64>,
}

/// CallLib's `IRCTrackStat`: one sent or received track.
#[derive(Debug, Clone, PartialEq)]
pub struct TrackStat {
    /// The `MediaStreamTrack` id (`trackId`): for a sender, the local track
    /// currently attached; for a receiver, the remote track of
    /// [`PeerEvent::RemoteTrack`](crate::PeerEvent::RemoteTrack).
    pub track_id: String,
    /// Audio or video.
    pub kind: Kind,
    /// Share of packets lost, 0–1. Received tracks: lost / (lost + received)
    /// since the previous sample (cumulative on the first). Sent tracks: the
    /// remote side's latest RTCP `fractionLost`. `None` while unknown (no
    /// packets in the interval, no receiver report yet).
    pub packets_lost_rate: Option<f64>,
    /// `true` for received (remote) tracks, `false` for sent ones.
    pub remote_resource: bool,
    /// Audio level 0–1 (audio only, when reported).
    pub audio_level: Option<f64>,
    /// Frame height in pixels (video only, once a frame was encoded/decoded).
    pub frame_height: Option<u32>,
    /// Frame width in pixels (video only, once a frame was encoded/decoded).
    pub frame_width: Option<u32>,
    /// Frames per second (video only, when reported).
    pub frame_rate: Option<f64>,
    /// Payload bitrate since the previous sample, kbit/s (0 on the first sample).
    pub bitrate: f64,
    /// Jitter in ms (received: measured here; sent: as reported back by
    /// the remote side), when known.
    pub jitter: Option<f64>,
}

/// CallLib's `IRCRTCStateReport`, for `onRTCStateReport`.
#[derive(Debug, Clone, PartialEq)]
pub struct StateReport {
    /// When the sample was taken, ms since the epoch (`Date.now()`).
    pub timestamp: f64,
    /// The candidate pair in use, `None` before ICE connected.
    pub ice_candidate_pair: Option<CandidatePairStat>,
    /// One entry per sent track (per `outbound-rtp` with a track attached).
    pub senders: Vec<TrackStat>,
    /// One entry per received track (per `inbound-rtp`; none before the
    /// first packet arrived).
    pub receivers: Vec<TrackStat>,
}

/// A cumulative counter at one stats timestamp.
#[derive(Debug, Clone, Copy)]
struct Counter {
    at_ms: f64,
    value: f64,
}

/// Turns successive `getStats()` results of one [`PeerLink`] into
/// [`StateReport`]s. Keep one per link and sample it about once a second
/// (CallLib reports every 1000 ms); the first report has zero bitrates.
///
/// With the sampler in a `RefCell` (no borrow held across the await):
/// ```text
/// let raw = link.stats().await?;
/// let report = sampler.borrow_mut().build(&link, &raw);
/// on_rtc_state_report.call1(&JsValue::NULL, &report.to_js());
/// ```
/// A task that owns its sampler can call [`sample`](Self::sample) instead.
///
/// (Counters are kept in `Vec`s: a connection has a few dozen stats, and a scan avoids pulling
/// a hash map into the wasm bundle.)
#[derive(Debug, Clone, Default)]
pub struct StatsSampler {
    /// Counters of the previous sample, by `<stat id>/<field>`.
    prev: Vec<(String, Counter)>,
}

impl StatsSampler {
    /// A sampler with no previous sample.
    pub fn new() -> StatsSampler {
        StatsSampler::default()
    }

    /// Forgets the previous sample (the next report has zero bitrates).
    pub fn reset(&mut self) {
        self.prev.clear();
    }

    /// `getStats()` on `link`, then [`build`](Self::build).
    pub async fn sample(&mut self, link: &PeerLink) -> Result<StateReport, MediaError> {
        let raw = link.stats().await?;
        Ok(self.build(link, &raw))
    }

    /// Builds the report from a `getStats()` result of `link` (the link is
    /// used to map stats to the tracks currently attached) and remembers its
    /// counters for the next call.
    pub fn build(&mut self, link: &PeerLink, report: &RtcStatsReport) -> StateReport {
        let all = Entries::new(report);
        let mut rates = Rates {
            prev: &self.prev,
            next: Vec::new(),
        };

        let ice_candidate_pair = all.selected_pair().map(|(pair, local, remote)| {
            let network_type =
                get_str(local, "networkType").or_else(|| get_str(local, "networkAdapterType"));
            CandidatePairStat {
                ip: address(local),
                port: port(local),
                network_type,
                remote_ip: address(remote),
                remote_port: port(remote),
                protocol: get_str(local, "protocol").unwrap_or_default(),
                bitrate_send: rates.kbps(pair, "bytesSent"),
                bitrate_recv: rates.kbps(pair, "bytesReceived"),
                rtt: get_f64(pair, "currentRoundTripTime").map(|s| s * 1000.0),
                available_outgoing_bitrate: get_f64(pair, "availableOutgoingBitrate"),
                available_incoming_bitrate: get_f64(pair, "availableIncomingBitrate"),
            }
        });

        // mid -> transceiver, to name the track a sender sends right now.
        let transceivers: Vec<RtcRtpTransceiver> = link
            .raw()
            .get_transceivers()
            .iter()
            .map(|t| t.unchecked_into())
            .collect();
        let by_mid = |stat: &JsValue| {
            let mid = get_str(stat, "mid")?;
            transceivers
                .iter()
                .find(|t| t.mid().as_deref() == Some(mid.as_str()))
        };

        let mut senders = Vec::new();
        for out in all.of_type("outbound-rtp") {
            let source = all.linked(out, "mediaSourceId");
            // The attached track: from the transceiver when the stat names
            // its mid (exact after replaceTrack), else from the media source.
            let track_id = match by_mid(out) {
                Some(t) => t.sender().track().map(|t| t.id()),
                None => source.and_then(|s| get_str(s, "trackIdentifier")),
            };
            let Some(track_id) = track_id else {
                continue; // nothing attached: nothing to report
            };
            let Some(kind) = stat_kind(out) else {
                continue;
            };
            let remote_in = all.linked(out, "remoteId").or_else(|| {
                let id = get_str(out, "id");
                all.of_type("remote-inbound-rtp")
                    .find(|r| get_str(r, "localId") == id)
            });
            let dims = |key: &str, source_key: &str| {
                get_f64(out, key)
                    .or_else(|| source.and_then(|s| get_f64(s, source_key)))
                    .map(|v| v as u32)
            };
            let video = kind == Kind::Video;
            senders.push(TrackStat {
                track_id,
                kind,
                packets_lost_rate: remote_in
                    .and_then(|r| get_f64(r, "fractionLost"))
                    .map(|f| f.clamp(0.0, 1.0)),
                remote_resource: false,
                audio_level: if video {
                    None
                } else {
                    source.and_then(|s| get_f64(s, "audioLevel"))
                },
                frame_height: if video {
                    dims("frameHeight", "height")
                } else {
                    None
                },
                frame_width: if video {
                    dims("frameWidth", "width")
                } else {
                    None
                },
                frame_rate: if video {
                    get_f64(out, "framesPerSecond")
                        .or_else(|| source.and_then(|s| get_f64(s, "framesPerSecond")))
                } else {
                    None
                },
                bitrate: rates.kbps(out, "bytesSent"),
                jitter: remote_in
                    .and_then(|r| get_f64(r, "jitter"))
                    .map(|s| s * 1000.0),
            });
        }

        let mut receivers = Vec::new();
        for inb in all.of_type("inbound-rtp") {
            let track_id = get_str(inb, "trackIdentifier")
                .or_else(|| by_mid(inb).map(|t| t.receiver().track().id()));
            let (Some(track_id), Some(kind)) = (track_id, stat_kind(inb)) else {
                continue;
            };
            let loss_rate = rates.loss(inb);
            let video = kind == Kind::Video;
            let opt_u32 = |key: &str| get_f64(inb, key).map(|v| v as u32);
            receivers.push(TrackStat {
                track_id,
                kind,
                packets_lost_rate: loss_rate,
                remote_resource: true,
                audio_level: if video {
                    None
                } else {
                    get_f64(inb, "audioLevel")
                },
                frame_height: if video { opt_u32("frameHeight") } else { None },
                frame_width: if video { opt_u32("frameWidth") } else { None },
                frame_rate: if video {
                    get_f64(inb, "framesPerSecond")
                } else {
                    None
                },
                bitrate: rates.kbps(inb, "bytesReceived"),
                jitter: get_f64(inb, "jitter").map(|s| s * 1000.0),
            });
        }

        self.prev = rates.next;
        StateReport {
            timestamp: js_sys::Date::now(),
            ice_candidate_pair,
            senders,
            receivers,
        }
    }
}

/// `kind` of an RTP stat (older browsers: `mediaType`).
fn stat_kind(stat: &JsValue) -> Option<Kind> {
    match get_str(stat, "kind")
        .or_else(|| get_str(stat, "mediaType"))?
        .as_str()
    {
        "audio" => Some(Kind::Audio),
        "video" => Some(Kind::Video),
        _ => None,
    }
}

/// Rates between the previous sample's counters and the current stats;
/// collects the current counters for the next sample.
struct Rates<'a> {
    prev: &'a [(String, Counter)],
    next: Vec<(String, Counter)>,
}

impl Rates<'_> {
    /// Remembers `stat[field]` and returns its rate since the previous
    /// sample, converted from bytes/ms to kbit/s (0 without a previous value).
    fn kbps(&mut self, stat: &JsValue, field: &str) -> f64 {
        match self.delta(stat, field) {
            Some((d_value, d_ms)) if d_ms > 0.0 => d_value * 8.0 / d_ms,
            _ => 0.0,
        }
    }

    /// Loss of an `inbound-rtp` since the previous sample:
    /// Δlost / (Δlost + Δreceived), cumulative on the first sample; `None`
    /// when no packet was expected in the interval.
    fn loss(&mut self, inb: &JsValue) -> Option<f64> {
        let lost = self.delta(inb, "packetsLost").map(|d| d.0).unwrap_or(0.0);
        let received = self
            .delta(inb, "packetsReceived")
            .map(|d| d.0)
            .unwrap_or(0.0);
        let total = lost + received;
        (total > 0.0).then(|| (lost / total).clamp(0.0, 1.0))
    }

    /// Remembers `stat[field]`; returns (Δvalue, Δms) since the previous
    /// sample, or the whole value (Δms 0) without one. A counter that went
    /// backwards (`packetsLost` drops when late packets arrive) counts as 0.
    fn delta(&mut self, stat: &JsValue, field: &str) -> Option<(f64, f64)> {
        let id = get_str(stat, "id")?;
        let at_ms = get_f64(stat, "timestamp")?;
        let value = get_f64(stat, field)?;
        let key = [&id, "/", field].concat();
        let prev = self.prev.iter().find(|(k, _)| *k == key).map(|(_, c)| *c);
        self.next.push((key, Counter { at_ms, value }));
        Some(match prev {
            Some(p) => ((value - p.value).max(0.0), at_ms - p.at_ms),
            None => (value.max(0.0), 0.0),
        })
    }
}
fn set(obj: &Object, key: &str, value: JsValue) {
    // Reflect.set on a plain fresh object cannot fail.
    let _ = Reflect::set(obj, &JsValue::from_str(key), &value);
}

fn opt_f64(v: Option<f64>) -> JsValue {
    v.map(JsValue::from_f64).unwrap_or(JsValue::NULL)
}

impl CandidatePairStat {
    /// The JS `IRCCandidatePairStat` object; unknown values are `null`.
    pub fn to_js(&self) -> JsValue {
        let o = Object::new();
        set(&o, "IP", self.ip.as_str().into());
        set(&o, "port", self.port.into());
        set(
            &o,
            "networkType",
            self.network_type
                .as_deref()
                .map(JsValue::from_str)
                .unwrap_or(JsValue::NULL),
        );
        set(&o, "remoteIP", self.remote_ip.as_str().into());
        set(&o, "remotePort", self.remote_port.into());
        set(&o, "protocol", self.protocol.as_str().into());
        set(&o, "bitrateSend", self.bitrate_send.into());
        set(&o, "bitrateRecv", self.bitrate_recv.into());
        set(&o, "rtt", opt_f64(self.rtt));
        set(
            &o,
            "availableOutgoingBitrate",
            opt_f64(self.available_outgoing_bitrate),
        );
        set(
            &o,
            "availableIncomingBitrate",
            opt_f64(self.available_incoming_bitrate),
        );
        o.into()
    }
}

impl TrackStat {
    /// The JS `IRCTrackStat` object. `packetsLostRate` and `jitter` are
    /// `null` when unknown; the optional `audioLevel`, `frameHeight`,
    /// `frameWidth` and `frameRate` keys are left out instead.
    pub fn to_js(&self) -> JsValue {
        let o = Object::new();
        set(&o, "trackId", self.track_id.as_str().into());
        set(&o, "kind", self.kind.as_str().into());
        set(&o, "packetsLostRate", opt_f64(self.packets_lost_rate));
        set(&o, "remoteResource", self.remote_resource.into());
        if let Some(v) = self.audio_level {
            set(&o, "audioLevel", v.into());
        }
        if let Some(v) = self.frame_height {
            set(&o, "frameHeight", v.into());
        }
        if let Some(v) = self.frame_width {
            set(&o, "frameWidth", v.into());
        }
        if let Some(v) = self.frame_rate {
            set(&o, "frameRate", v.into());
        }
        set(&o, "bitrate", self.bitrate.into());
        set(&o, "jitter", opt_f64(self.jitter));
        o.into()
    }
}

impl StateReport {
    /// The JS `IRCRTCStateReport` object for the app's `onRTCStateReport`:
    /// `{timestamp, iceCandidatePair?, senders, receivers}` (the key
    /// `iceCandidatePair` is left out before ICE connected).
    pub fn to_js(&self) -> JsValue {
        let o = Object::new();
        set(&o, "timestamp", self.timestamp.into());
        if let Some(p) = &self.ice_candidate_pair {
            set(&o, "iceCandidatePair", p.to_js());
        }
        let list = |v: &[TrackStat]| -> JsValue {
            v.iter()
                .map(TrackStat::to_js)
                .collect::<js_sys::Array>()
                .into()
        };
        set(&o, "senders", list(&self.senders));
        set(&o, "receivers", list(&self.receivers));
        o.into()
    }
}
