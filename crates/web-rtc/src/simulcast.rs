//! Simulcast layers for the SFU's publishing connection (group calls through Janus).
//!
//! The sender encodes its camera once per layer; the SFU forwards each subscriber the layer
//! that fits its tiles. Chromium encodes at most 2 layers below 960x540 (its own limit), so a
//! small capture gets 2 layers and a large one 3. Rids are named high to low (`h`, `m`, `l`),
//! the order janus.js uses and Janus expects.

/// One encoding of the video sender (`RTCRtpEncodingParameters`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Layer {
    /// `rid`.
    pub rid: &'static str,
    /// `scaleResolutionDownBy`.
    pub scale_down_by: f64,
    /// `maxBitrate` in bit/s.
    pub max_bitrate_bps: u32,
}

impl Layer {
    const fn new(rid: &'static str, scale_down_by: f64, max_bitrate_bps: u32) -> Self {
        Layer {
            rid,
            scale_down_by,
            max_bitrate_bps,
        }
    }
}

// rid, scaleResolutionDownBy, maxBitrate (bit/s).
const HIGH: Layer = Layer::new("h", 1.0, 900_000);
const MID: Layer = Layer::new("m", 2.0, 300_000);
const LOW4: Layer = Layer::new("l", 4.0, 100_000);
const LOW2: Layer = Layer::new("l", 2.0, 200_000);

/// The layers for a capture of `width` x `height` (0 when unknown: the 640x480 default),
/// high first.
pub fn layers(width: u32, height: u32) -> Vec<Layer> {
    let (w, h) = if width == 0 || height == 0 {
        (640, 480)
    } else {
        (width, height)
    };
    if u64::from(w) * u64::from(h) >= 960 * 540 {
        vec![HIGH, MID, LOW4]
    } else {
        vec![HIGH, LOW2]
    }
}

/// Whether the encoding `rid` of a camera sent in `count` [`layers`] stays on when subscribers
/// take layers up to `max_substream` (0 low … 2 high, counted from the lowest as the SFU numbers
/// them: with 2 layers `h` is substream 1). The low layer always does: subscribers fall back to
/// it.
pub fn active(rid: &str, count: usize, max_substream: u32) -> bool {
    let from_low = match rid {
        "l" => 0,
        "m" => 1,
        _ => count.saturating_sub(1) as u32,
    };
    from_low == 0 || from_low <= max_substream
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_captures_get_two_layers_large_ones_three_scaled_4_2_1() {
        let rids = |w, h| {
            layers(w, h)
                .iter()
                .map(|l| (l.rid, l.scale_down_by))
                .collect::<Vec<_>>()
        };
        assert_eq!(rids(640, 480), [("h", 1.0), ("l", 2.0)]);
        assert_eq!(rids(0, 0), [("h", 1.0), ("l", 2.0)]);
        assert_eq!(rids(1280, 720), [("h", 1.0), ("m", 2.0), ("l", 4.0)]);
        assert_eq!(rids(960, 540), [("h", 1.0), ("m", 2.0), ("l", 4.0)]);
        // Paused above what subscribers take; the low layer never.
        let on = |count, max| {
            ["h", "m", "l"][3 - count..]
                .iter()
                .map(|r| active(r, count, max))
                .collect::<Vec<_>>()
        };
        assert_eq!(on(2, 0), [false, true]);
        assert_eq!(on(2, 1), [true, true]);
        assert_eq!(on(2, 2), [true, true]);
        assert_eq!(on(3, 0), [false, false, true]);
        assert_eq!(on(3, 1), [false, true, true]);
        assert_eq!(on(3, 2), [true, true, true]);
        for w in [320, 640, 1920] {
            let l = layers(w, w * 9 / 16);
            assert!(
                l.windows(2)
                    .all(|p| p[0].max_bitrate_bps > p[1].max_bitrate_bps),
                "high first"
            );
        }
    }
}
