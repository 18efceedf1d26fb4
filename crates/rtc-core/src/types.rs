//! CallLib's public enumerations (spec A.8) and the reason mapping of B.6.
//!
//! These are the single source of truth for the values the SDK exposes to JavaScript:
//! `examples/js_enums.rs` prints them as the JS objects the CDN script defines synchronously.

/// `RCCallErrorCode`.
pub mod error_code {
    pub const SUCCESS: i32 = 10000;
    pub const STATE_MACHINE_EXIT: i32 = 53200;
    pub const SEND_MSG_ERROR: i32 = 53201;
    pub const REJECTED_BY_BLACKLIST: i32 = 53202;
    pub const NOT_IN_GROUP: i32 = 53203;
    pub const GET_LOCAL_AUDIO_TRACK_ERROR: i32 = 53301;
    pub const GET_LOCAL_VIDEO_TRACK_ERROR: i32 = 53302;
    pub const GET_LOCAL_AUDIO_AND_VIDEO_TRACK_ERROR: i32 = 53303;
    pub const JOIN_ROOM_ERROR: i32 = 53304;
    pub const AUDIO_PUBLISH_ERROR: i32 = 53305;
    pub const VIDEO_PUBLISH_ERROR: i32 = 53306;
    pub const AUDIO_AND_VIDEO_PUBLISH_ERROR: i32 = 53307;
    pub const QUERY_JOINED_USER_INFO_ERROR: i32 = 53308;
    pub const MISSING_VIDEO_TRACK_ERROR: i32 = 53309;
    pub const UNPUBLISH_VIDEO_ERROR: i32 = 53310;
    pub const CONVERSATION_NOT_GROUP_ERROR: i32 = 53311;
    /// Spec G.1: no source gives the value. Decision: 53312, the first free code of the
    /// Web Call range (53300–53499) after CONVERSATION_NOT_GROUP_ERROR.
    pub const PARAM_ERROR: i32 = 53312;
}

/// `RCCallEndReason`.
pub mod end_reason {
    pub const CANCEL: i32 = 1;
    pub const REJECT: i32 = 2;
    pub const HANGUP: i32 = 3;
    pub const BUSY_LINE: i32 = 4;
    pub const NO_RESPONSE: i32 = 5;
    pub const ENGINE_UNSUPPORTED: i32 = 6;
    pub const NETWORK_ERROR: i32 = 7;
    pub const GET_MEDIA_RESOURCES_ERROR: i32 = 8;
    pub const PUBLISH_ERROR: i32 = 9;
    pub const SUBSCRIBE_ERROR: i32 = 10;
    pub const REMOTE_CANCEL: i32 = 11;
    pub const REMOTE_REJECT: i32 = 12;
    pub const REMOTE_HANGUP: i32 = 13;
    pub const REMOTE_BUSY_LINE: i32 = 14;
    pub const REMOTE_NO_RESPONSE: i32 = 15;
    pub const REMOTE_ENGINE_UNSUPPORTED: i32 = 16;
    pub const REMOTE_NETWORK_ERROR: i32 = 17;
    pub const REMOTE_GET_MEDIA_RESOURCE_ERROR: i32 = 18;
    pub const REMOTE_PUBLISH_ERROR: i32 = 19;
    pub const REMOTE_SUBSCRIBE_ERROR: i32 = 20;
    pub const OTHER_CLIENT_JOINED_CALL: i32 = 21;
    pub const OTHER_CLIENT_IN_CALL: i32 = 22;
    pub const KICKED_BY_SERVER: i32 = 23;
    pub const ACCEPT_SYSTEM_CALL: i32 = 24;
    pub const REMOTE_OTHER_CLIENT_JOINED_CALL: i32 = 31;
    pub const REMOTE_OTHER_CLIENT_IN_CALL: i32 = 32;
    pub const REMOTE_KICKED_BY_SERVER: i32 = 33;
    /// The docs' value; the legacy bundle's 24 clashes with ACCEPT_SYSTEM_CALL (spec F).
    pub const REMOTE_ACCEPT_SYSTEM_CALL: i32 = 34;
    pub const ACCEPT_BY_OTHER_CLIENT: i32 = 101;
    pub const HANGUP_BY_OTHER_CLIENT: i32 = 102;
    pub const ADDED_TO_BLACKLIST: i32 = 103;
    pub const SERVICE_NOT_OPENED: i32 = 104;
}

/// Maps a hangup reason received on the wire (sender's perspective) to the receiver's (spec B.6).
///
/// Decision for spec G.8 (reasons without a mapping: 11–14, 16–20, 31–34, 101–104 and unknown
/// values): the legacy SDK delivered `undefined`; we deliver REMOTE_HANGUP (13), because such a
/// message still means "that participant left", and an app's `switch` on the reason then lands
/// on the ordinary remote-hangup branch.
pub fn map_remote_reason(wire: i32) -> i32 {
    use end_reason::*;
    match wire {
        REMOTE_NO_RESPONSE => NO_RESPONSE,
        1..=10 => wire + 10,
        21..=23 => wire + 10,
        ACCEPT_SYSTEM_CALL => REMOTE_ACCEPT_SYSTEM_CALL,
        _ => REMOTE_HANGUP,
    }
}

/// `RCCallSessionState`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionState {
    Waiting = 0,
    Keeping = 1,
    End = 2,
}

/// `RCCallUserState`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UserState {
    None = 0,
    Waiting = 1,
    Keeping = 2,
}

/// `RCCallMediaType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MediaType {
    Audio = 1,
    AudioVideo = 2,
}

impl MediaType {
    pub fn from_i32(v: i32) -> Option<Self> {
        match v {
            1 => Some(Self::Audio),
            2 => Some(Self::AudioVideo),
            _ => None,
        }
    }
    pub fn has_video(self) -> bool {
        self == Self::AudioVideo
    }
}

/// Internal `MsgCallStatus` of `existedUserPofiles`.
pub mod call_status {
    pub const OUTGOING: i32 = 1;
    pub const INCOMING: i32 = 2;
    pub const RINGING: i32 = 3;
    pub const CONNECTED: i32 = 4;
    pub const IDLE: i32 = 5;
    pub const ACCEPTED: i32 = 6;
}

/// A JS enum object: its name and `(key, value)` pairs in declaration order.
pub struct JsEnum {
    pub name: &'static str,
    pub values: &'static [(&'static str, JsValueLit)],
}

/// A literal value of a JS enum member.
#[derive(Clone, Copy)]
pub enum JsValueLit {
    Int(i32),
    Str(&'static str),
}

macro_rules! int_enum {
    ($name:literal, $module:ident, [$($key:ident),* $(,)?]) => {
        JsEnum { name: $name, values: &[$((stringify!($key), JsValueLit::Int($module::$key))),*] }
    };
}

/// Every enum object of spec A.8 exposed on `window.RCCall` (and RTC's on `window.RCRTC`).
pub const CALL_ENUMS: &[JsEnum] = &[
    int_enum!(
        "RCCallErrorCode",
        error_code,
        [
            SUCCESS,
            STATE_MACHINE_EXIT,
            SEND_MSG_ERROR,
            REJECTED_BY_BLACKLIST,
            NOT_IN_GROUP,
            GET_LOCAL_AUDIO_TRACK_ERROR,
            GET_LOCAL_VIDEO_TRACK_ERROR,
            GET_LOCAL_AUDIO_AND_VIDEO_TRACK_ERROR,
            JOIN_ROOM_ERROR,
            AUDIO_PUBLISH_ERROR,
            VIDEO_PUBLISH_ERROR,
            AUDIO_AND_VIDEO_PUBLISH_ERROR,
            QUERY_JOINED_USER_INFO_ERROR,
            MISSING_VIDEO_TRACK_ERROR,
            UNPUBLISH_VIDEO_ERROR,
            CONVERSATION_NOT_GROUP_ERROR,
            PARAM_ERROR,
        ]
    ),
    int_enum!(
        "RCCallEndReason",
        end_reason,
        [
            CANCEL,
            REJECT,
            HANGUP,
            BUSY_LINE,
            NO_RESPONSE,
            ENGINE_UNSUPPORTED,
            NETWORK_ERROR,
            GET_MEDIA_RESOURCES_ERROR,
            PUBLISH_ERROR,
            SUBSCRIBE_ERROR,
            REMOTE_CANCEL,
            REMOTE_REJECT,
            REMOTE_HANGUP,
            REMOTE_BUSY_LINE,
            REMOTE_NO_RESPONSE,
            REMOTE_ENGINE_UNSUPPORTED,
            REMOTE_NETWORK_ERROR,
            REMOTE_GET_MEDIA_RESOURCE_ERROR,
            REMOTE_PUBLISH_ERROR,
            REMOTE_SUBSCRIBE_ERROR,
            OTHER_CLIENT_JOINED_CALL,
            OTHER_CLIENT_IN_CALL,
            KICKED_BY_SERVER,
            ACCEPT_SYSTEM_CALL,
            REMOTE_OTHER_CLIENT_JOINED_CALL,
            REMOTE_OTHER_CLIENT_IN_CALL,
            REMOTE_KICKED_BY_SERVER,
            REMOTE_ACCEPT_SYSTEM_CALL,
            ACCEPT_BY_OTHER_CLIENT,
            HANGUP_BY_OTHER_CLIENT,
            ADDED_TO_BLACKLIST,
            SERVICE_NOT_OPENED,
        ]
    ),
    JsEnum {
        name: "RCCallSessionState",
        values: &[("WAITING", JsValueLit::Int(0)), ("KEEPING", JsValueLit::Int(1)), ("END", JsValueLit::Int(2))],
    },
    JsEnum {
        name: "RCCallUserState",
        values: &[("NONE", JsValueLit::Int(0)), ("WAITING", JsValueLit::Int(1)), ("KEEPING", JsValueLit::Int(2))],
    },
    JsEnum { name: "RCCallMediaType", values: &[("AUDIO", JsValueLit::Int(1)), ("AUDIO_VIDEO", JsValueLit::Int(2))] },
    JsEnum { name: "RCCallLanguage", values: &[("ZH", JsValueLit::Str("zh")), ("EN", JsValueLit::Str("en"))] },
    JsEnum {
        name: "RCFrameRate",
        values: &[
            ("FPS_10", JsValueLit::Str("FPS_10")),
            ("FPS_15", JsValueLit::Str("FPS_15")),
            ("FPS_24", JsValueLit::Str("FPS_24")),
            ("FPS_30", JsValueLit::Str("FPS_30")),
        ],
    },
    JsEnum {
        name: "RCResolution",
        values: &[
            ("W176_H132", JsValueLit::Str("W176_H132")),
            ("W176_H144", JsValueLit::Str("W176_H144")),
            ("W256_H144", JsValueLit::Str("W256_H144")),
            ("W320_H180", JsValueLit::Str("W320_H180")),
            ("W240_H240", JsValueLit::Str("W240_H240")),
            ("W320_H240", JsValueLit::Str("W320_H240")),
            ("W480_H360", JsValueLit::Str("W480_H360")),
            ("W640_H360", JsValueLit::Str("W640_H360")),
            ("W480_H480", JsValueLit::Str("W480_H480")),
            ("W640_H480", JsValueLit::Str("W640_H480")),
            ("W720_H480", JsValueLit::Str("W720_H480")),
            ("W1280_H720", JsValueLit::Str("W1280_H720")),
            ("W1920_H1080", JsValueLit::Str("W1920_H1080")),
        ],
    },
];

/// Enum objects of `window.RongIMLib` (spec E).
pub const IM_ENUMS: &[JsEnum] = &[
    JsEnum {
        name: "ErrorCode",
        values: &[
            ("SUCCESS", JsValueLit::Int(0)),
            ("ACTIVE_DISCONNECT", JsValueLit::Int(2)),
            ("REJECTED_BY_BLACKLIST", JsValueLit::Int(405)),
            ("NOT_IN_WHITELIST", JsValueLit::Int(407)),
            ("NOT_IN_GROUP", JsValueLit::Int(22406)),
            ("FORBIDDEN_IN_GROUP", JsValueLit::Int(22408)),
            ("RC_NET_CHANNEL_INVALID", JsValueLit::Int(30001)),
            ("RC_NET_UNAVAILABLE", JsValueLit::Int(30002)),
            ("RC_MSG_RESP_TIMEOUT", JsValueLit::Int(30003)),
            ("RC_MSG_SEND_FAIL", JsValueLit::Int(30014)),
            ("CONNECT_OVER_FREQUENCY", JsValueLit::Int(30015)),
            ("RC_CONN_ACK_TIMEOUT", JsValueLit::Int(31000)),
            ("RC_CONN_TOKEN_INCORRECT", JsValueLit::Int(31004)),
            ("RC_CONN_USER_BLOCKED", JsValueLit::Int(31009)),
            ("RC_DISCONN_KICK", JsValueLit::Int(31010)),
            ("RC_CONN_TOKEN_EXPIRED", JsValueLit::Int(31020)),
            ("BIZ_ERROR_CLIENT_NOT_INIT", JsValueLit::Int(33001)),
            ("BIZ_ERROR_INVALID_PARAMETER", JsValueLit::Int(33003)),
            ("RC_CONNECTION_EXIST", JsValueLit::Int(34001)),
            ("CONNECTION_TIMEOUT", JsValueLit::Int(34006)),
        ],
    },
    JsEnum {
        name: "ConversationType",
        values: &[
            ("NONE", JsValueLit::Int(0)),
            ("PRIVATE", JsValueLit::Int(1)),
            ("DISCUSSION", JsValueLit::Int(2)),
            ("GROUP", JsValueLit::Int(3)),
            ("CHATROOM", JsValueLit::Int(4)),
            ("CUSTOMER_SERVICE", JsValueLit::Int(5)),
            ("SYSTEM", JsValueLit::Int(6)),
            ("APP_PUBLIC_SERVICE", JsValueLit::Int(7)),
            ("PUBLIC_SERVICE", JsValueLit::Int(8)),
            ("ULTRA_GROUP", JsValueLit::Int(10)),
            ("RTC_ROOM", JsValueLit::Int(12)),
        ],
    },
    JsEnum {
        name: "RCConnectionStatus",
        values: &[
            ("CONNECTED", JsValueLit::Int(0)),
            ("CONNECTING", JsValueLit::Int(1)),
            ("DISCONNECTED", JsValueLit::Int(2)),
            ("SUSPENDED", JsValueLit::Int(3)),
        ],
    },
    // IMLib 5 `Events` for `RongIMLib.addEventListener`; rcall fires the connection ones.
    JsEnum {
        name: "Events",
        values: &[
            ("CONNECTING", JsValueLit::Str("CONNECTING")),
            ("CONNECTED", JsValueLit::Str("CONNECTED")),
            ("DISCONNECT", JsValueLit::Str("DISCONNECT")),
            ("SUSPEND", JsValueLit::Str("SUSPEND")),
            ("MESSAGES", JsValueLit::Str("MESSAGES")),
        ],
    },
];

/// Enum objects of `window.RCRTC` (spec D.7).
pub const RTC_ENUMS: &[JsEnum] = &[
    JsEnum {
        name: "RCRTCCode",
        values: &[
            ("SUCCESS", JsValueLit::Int(10000)),
            ("SIGNAL_DISCONNECTED", JsValueLit::Int(50000)),
            ("PARAMS_ERROR", JsValueLit::Int(50001)),
            ("REPERT_JOIN_ROOM", JsValueLit::Int(50002)),
            ("NOT_IN_ROOM", JsValueLit::Int(50003)),
            ("SERVICE_INVALID", JsValueLit::Int(50004)),
            ("RTC_TOKEN_INVALID", JsValueLit::Int(50006)),
            ("SIGNAL_ERROR", JsValueLit::Int(53001)),
            ("CREATE_OFFER_FAILED", JsValueLit::Int(53003)),
            ("REQUEST_FAILED", JsValueLit::Int(53004)),
            ("ROOM_HAS_BEEN_DESTROYED", JsValueLit::Int(53008)),
            ("NOT_OPEN_VIDEO_AUDIO_SERVER", JsValueLit::Int(53009)),
            ("GET_USER_MEDIA_FAILED", JsValueLit::Int(53010)),
            ("PERMISSION_DENIED", JsValueLit::Int(53012)),
            ("INVALID_TAGS", JsValueLit::Int(53014)),
            ("INVALID_USER_ID", JsValueLit::Int(53015)),
            ("BROWSER_NOT_SUPPORT", JsValueLit::Int(53019)),
            ("TRACK_NOT_READY", JsValueLit::Int(53020)),
            ("VIDEO_TRACK_MISS_MEDIA_ELEMENT", JsValueLit::Int(53021)),
            ("TRACK_PLAY_ERROR", JsValueLit::Int(53022)),
            ("PUBLISH_TRACK_LIMIT_EXCEEDED", JsValueLit::Int(53026)),
            ("SIGNAL_JOIN_RTC_ROOM_REFUSED", JsValueLit::Int(53028)),
            ("SOME_TRACKS_PUBLISH_FAILED", JsValueLit::Int(53031)),
        ],
    },
    JsEnum { name: "RCKickReason", values: &[("SERVER_KICK", JsValueLit::Int(1)), ("OTHER_KICK", JsValueLit::Int(2))] },
    JsEnum { name: "RCRTCPingResult", values: &[("SUCCESS", JsValueLit::Str("Success")), ("FAIL", JsValueLit::Str("Fail"))] },
    JsEnum {
        name: "RCMediaType",
        values: &[("AUDIO_ONLY", JsValueLit::Int(0)), ("VIDEO_ONLY", JsValueLit::Int(1)), ("AUDIO_VIDEO", JsValueLit::Int(2))],
    },
    JsEnum {
        name: "RTCJoinType",
        values: &[("KICK", JsValueLit::Int(0)), ("REFUSE", JsValueLit::Int(1)), ("COEXIST", JsValueLit::Int(2))],
    },
];

/// The three globals' enum objects as one JSON object `{"RongIMLib": {...}, "RCRTC": {...},
/// "RCCall": {...}}`, embedded in the SDK's JS so enums exist before the wasm has loaded.
pub fn enums_json() -> String {
    fn group(enums: &[JsEnum]) -> String {
        let items: Vec<String> = enums
            .iter()
            .map(|e| {
                let values: Vec<String> = e
                    .values
                    .iter()
                    .map(|(k, v)| match v {
                        JsValueLit::Int(i) => format!("\"{k}\":{i}"),
                        JsValueLit::Str(s) => format!("\"{k}\":\"{s}\""),
                    })
                    .collect();
                format!("\"{}\":{{{}}}", e.name, values.join(","))
            })
            .collect();
        format!("{{{}}}", items.join(","))
    }
    let frame_and_resolution: Vec<&JsEnum> = CALL_ENUMS.iter().filter(|e| e.name == "RCFrameRate" || e.name == "RCResolution").collect();
    let rtc: Vec<JsEnum> = RTC_ENUMS.iter().chain(frame_and_resolution).map(|e| JsEnum { name: e.name, values: e.values }).collect();
    format!("{{\"RongIMLib\":{},\"RCRTC\":{},\"RCCall\":{}}}", group(IM_ENUMS), group(&rtc), group(CALL_ENUMS))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_reasons_follow_b6() {
        for local in 1..=10 {
            let expected = if local == 5 { 15 } else { local + 10 };
            assert_eq!(map_remote_reason(local), expected, "wire {local}");
        }
        assert_eq!(map_remote_reason(15), 5);
        assert_eq!(map_remote_reason(21), 31);
        assert_eq!(map_remote_reason(22), 32);
        assert_eq!(map_remote_reason(23), 33);
        assert_eq!(map_remote_reason(24), 34);
        // G.8 decision: unmapped values become REMOTE_HANGUP.
        for odd in [11, 13, 14, 16, 20, 31, 34, 101, 102, 103, 104, 0, -1, 9999] {
            assert_eq!(map_remote_reason(odd), 13, "wire {odd}");
        }
    }

    #[test]
    fn enum_values_match_spec_a8() {
        let find = |e: &str, k: &str| -> i32 {
            let en = CALL_ENUMS.iter().find(|x| x.name == e).unwrap();
            match en.values.iter().find(|(n, _)| *n == k).unwrap().1 {
                JsValueLit::Int(v) => v,
                JsValueLit::Str(_) => panic!("string"),
            }
        };
        assert_eq!(find("RCCallErrorCode", "SUCCESS"), 10000);
        assert_eq!(find("RCCallErrorCode", "CONVERSATION_NOT_GROUP_ERROR"), 53311);
        assert_eq!(find("RCCallEndReason", "REMOTE_ACCEPT_SYSTEM_CALL"), 34);
        assert_eq!(find("RCCallEndReason", "SERVICE_NOT_OPENED"), 104);
        assert_eq!(find("RCCallSessionState", "END"), 2);
        assert_eq!(find("RCCallMediaType", "AUDIO_VIDEO"), 2);
        let reasons = &CALL_ENUMS[1];
        assert_eq!(reasons.values.len(), 32);
    }

    #[test]
    fn enums_json_has_the_three_globals() {
        let json = enums_json();
        assert!(json.starts_with("{\"RongIMLib\":{\"ErrorCode\":{\"SUCCESS\":0,"), "{json}");
        assert!(json.contains("\"RCRTC\":{\"RCRTCCode\":{\"SUCCESS\":10000"));
        assert!(json.contains("\"RCCallMediaType\":{\"AUDIO\":1,\"AUDIO_VIDEO\":2}"));
        assert!(json.contains("\"RCResolution\":{\"W176_H132\":\"W176_H132\""));
        assert_eq!(json.matches('{').count(), json.matches('}').count());
    }
}
