//! Edits to the SDP a link applies as its *remote* description.
//!
//! Only remote descriptions are edited: they may legally say anything the peer
//! wants, whereas editing a local description is "SDP munging", which browsers
//! are deprecating. Both sides edit what they receive, so each sender ends up
//! configured by its own edit of the peer's description.

/// Initial bandwidth estimate for video, kbit/s (Chromium's `x-google-start-bitrate`).
///
/// Why: Chromium starts every video sender at 300 kbit/s and paces its first
/// keyframe at that rate, which costs ~15 ms before the first frame reaches the
/// peer (`bench/pipeline`: 99 → 85 ms at 640x480). A P2P call's link has
/// usually far more; the estimate still falls within a second on a worse one.
/// 1500 stays under the 1700 kbit/s Chromium caps 640x480 at, so it never asks
/// for more than the default profile can use.
pub const START_BITRATE_KBPS: u32 = 1500;

/// Video codecs whose `fmtp` gets the start bitrate (not rtx/red/ulpfec/flexfec).
const VIDEO_CODECS: [&str; 5] = ["VP8", "VP9", "H264", "AV1", "H265"];

/// The decimal form of `n` without `core::fmt`, which the SDK's wasm does not ship (the
/// SDK's own messages use `rtc_core::text::int`; this crate does not depend on rtc-core).
pub(crate) fn decimal(mut n: u32) -> String {
    let mut digits = Vec::with_capacity(10);
    loop {
        digits.push(b'0' + (n % 10) as u8);
        n /= 10;
        if n == 0 {
            break;
        }
    }
    digits.iter().rev().map(|&d| d as char).collect()
}

/// Adds `x-google-start-bitrate=<kbps>` to the `fmtp` of every video codec in
/// every `m=video` section, creating the `fmtp` line when there is none and
/// leaving codecs that already carry a start bitrate alone. Line endings
/// (`\r\n` or `\n`) are kept.
pub fn with_start_bitrate(sdp: &str, kbps: u32) -> String {
    // Char patterns and push_str only: this runs in the wasm bundle, where substring
    // searchers, `join` and `char` formatting would cost kilobytes.
    let eol = if sdp.bytes().any(|b| b == b'\r') {
        "\r\n"
    } else {
        "\n"
    };
    let lines: Vec<&str> = sdp
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .collect();
    let param = ["x-google-start-bitrate=", &decimal(kbps)].concat();
    let mut out = String::with_capacity(sdp.len() + 128);
    let mut first = true;
    let mut emit = |parts: &[&str]| {
        if !std::mem::take(&mut first) {
            out.push_str(eol);
        }
        parts.iter().for_each(|p| out.push_str(p));
    };
    // Sections begin at each `m=` line; only `m=video` ones are edited.
    let mut start = 0;
    while start < lines.len() {
        let end = (start + 1..lines.len())
            .find(|&i| lines[i].starts_with("m="))
            .unwrap_or(lines.len());
        let section = &lines[start..end];
        start = end;
        if !section[0].starts_with("m=video") {
            section.iter().for_each(|l| emit(&[l]));
            continue;
        }
        // Payload types of the video codecs in this section.
        let codec_pts: Vec<&str> = section
            .iter()
            .filter_map(|l| l.strip_prefix("a=rtpmap:"))
            .filter_map(|rest| {
                let (pt, enc) = rest.split_once(' ')?;
                let name = enc.split('/').next()?;
                VIDEO_CODECS
                    .iter()
                    .any(|c| c.eq_ignore_ascii_case(name))
                    .then_some(pt)
            })
            .collect();
        for line in section {
            if fmtp_pt(line).is_some_and(|pt| codec_pts.contains(&pt)) {
                let has = line
                    .split([' ', ';'])
                    .any(|p| p.starts_with("x-google-start-bitrate="));
                let sep = if line.bytes().any(|b| b == b' ') {
                    ";"
                } else {
                    " "
                };
                if has {
                    emit(&[line]);
                } else {
                    emit(&[line, sep, &param]);
                }
                continue;
            }
            emit(&[line]);
            if let Some(pt) = line
                .strip_prefix("a=rtpmap:")
                .and_then(|r| r.split(' ').next())
            {
                if codec_pts.contains(&pt) && !section.iter().any(|l| fmtp_pt(l) == Some(pt)) {
                    emit(&["a=fmtp:", pt, " ", &param]);
                }
            }
        }
    }
    out
}

/// The payload type of an `a=fmtp:<pt> ...` line.
fn fmtp_pt(line: &str) -> Option<&str> {
    let rest = line.strip_prefix("a=fmtp:")?;
    rest.split(' ').next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_matches_to_string() {
        for n in [0, 7, 10, 99, 100, 2500, u32::MAX] {
            assert_eq!(decimal(n), n.to_string());
        }
    }

    const OFFER: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=rtpmap:111 opus/48000/2\r\na=fmtp:111 minptime=10;useinbandfec=1\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 96 97 102 103 35\r\na=mid:1\r\na=rtpmap:96 VP8/90000\r\na=rtcp-fb:96 nack\r\n\
a=rtpmap:97 rtx/90000\r\na=fmtp:97 apt=96\r\n\
a=rtpmap:102 H264/90000\r\na=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f\r\n\
a=rtpmap:103 rtx/90000\r\na=fmtp:103 apt=102\r\na=rtpmap:35 AV1/90000\r\na=fmtp:35\r\n";

    #[test]
    fn adds_the_start_bitrate_to_every_video_codec_only() {
        let out = with_start_bitrate(OFFER, 1500);
        // VP8 had no fmtp: one is added right after its rtpmap.
        assert!(out.contains(
            "a=rtpmap:96 VP8/90000\r\na=fmtp:96 x-google-start-bitrate=1500\r\na=rtcp-fb:96 nack"
        ));
        // H264 keeps its parameters and gets ours appended.
        assert!(out.contains(
            "a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f;x-google-start-bitrate=1500\r\n"
        ));
        // An empty fmtp gets the parameter as its only one.
        assert!(out.contains("a=fmtp:35 x-google-start-bitrate=1500\r\n"));
        // rtx and audio are untouched.
        assert!(out.contains("a=fmtp:97 apt=96\r\n"));
        assert!(out.contains("a=fmtp:103 apt=102\r\n"));
        assert!(out.contains("a=fmtp:111 minptime=10;useinbandfec=1\r\n"));
        assert_eq!(out.matches("x-google-start-bitrate").count(), 3);
        // Nothing else changed: removing our additions gives the input back.
        let undone = out
            .replace("a=fmtp:96 x-google-start-bitrate=1500\r\n", "")
            .replace(";x-google-start-bitrate=1500", "")
            .replace(" x-google-start-bitrate=1500", "");
        assert_eq!(undone, OFFER);
    }

    #[test]
    fn is_idempotent_and_keeps_an_existing_start_bitrate() {
        let once = with_start_bitrate(OFFER, 1500);
        assert_eq!(with_start_bitrate(&once, 800), once);
    }

    #[test]
    fn keeps_lf_line_endings_and_sdp_without_video() {
        let lf = OFFER.replace("\r\n", "\n");
        let out = with_start_bitrate(&lf, 1000);
        assert!(!out.contains('\r'));
        assert!(out.contains("a=rtpmap:96 VP8/90000\na=fmtp:96 x-google-start-bitrate=1000\n"));
        let audio_only = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\n";
        assert_eq!(with_start_bitrate(audio_only, 1000), audio_only);
        assert_eq!(with_start_bitrate("", 1000), "");
    }
}
