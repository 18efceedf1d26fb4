//! The CDN's wasm unpacker (`rcall_unpack::container::unpack`: LZMA streams, then the join
//! that puts the code section back) on arbitrary payloads: what a page unpacks is whatever the
//! network delivered. Checks: no panic, and the work is bounded by the header's sizes (capped
//! here at 1 MB each so one input cannot ask for 4 GB).

use rcall_unpack::pack::sized;
use rcall_unpack::{container, MAX_PROBS};

pub fn run(data: &[u8]) {
    let (mut out, mut scratch) = (Vec::new(), Vec::new());
    let mut probs = Box::new([0u16; MAX_PROBS]);
    let _ = container::unpack(data, &mut probs, |m, s| {
        (m <= 1 << 20 && s <= 1 << 20).then(|| sized(&mut out, m, &mut scratch, s))
    });
}
