//! Per-peer video caps for group calls.
//!
//! Media is a P2P mesh: each participant encodes its camera once per peer and uploads each copy.
//! Measured with `bench/mesh` (every participant on one 2-core machine, 640x480 @ 15 fps):
//! - up to 4 participants every stream decodes at the full frame rate;
//! - at 5 the machine saturates;
//! - at 6 every video drops to 3–10 fps, and each participant uploads 5 × 400 kbit/s.
//!
//! So from 4 peers on (5 participants) every copy is sent at half the width and height, a quarter
//! of the pixels to encode, and capped in bitrate. Smaller calls are left alone.

/// Limits for one video sender (`RTCRtpEncodingParameters`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VideoCaps {
    /// `scaleResolutionDownBy` (1 = as captured).
    pub scale_down_by: f64,
    /// `maxBitrate` in bit/s; `None` = the browser's own estimate decides.
    pub max_bitrate_bps: Option<u32>,
}

impl VideoCaps {
    /// No limit.
    pub const FULL: VideoCaps = VideoCaps {
        scale_down_by: 1.0,
        max_bitrate_bps: None,
    };

    /// Peers from which a call is capped.
    pub const CAPPED_FROM_PEERS: usize = 4;

    /// The caps for each link of a call that has `peers` links (remote participant devices).
    pub fn for_peers(peers: usize) -> VideoCaps {
        if peers >= Self::CAPPED_FROM_PEERS {
            VideoCaps {
                scale_down_by: 2.0,
                max_bitrate_bps: Some(300_000),
            }
        } else {
            Self::FULL
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_calls_are_left_alone_larger_ones_send_a_quarter_of_the_pixels() {
        for peers in 0..4 {
            assert_eq!(
                VideoCaps::for_peers(peers),
                VideoCaps::FULL,
                "{peers} peers"
            );
        }
        for peers in [4, 5, 9] {
            let caps = VideoCaps::for_peers(peers);
            assert_eq!(caps.scale_down_by, 2.0);
            assert_eq!(caps.max_bitrate_bps, Some(300_000));
        }
    }
}
