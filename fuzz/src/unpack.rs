//! The CDN's wasm unpacker (`rcall_unpack::decode`) on arbitrary `.lzma` bytes: what a page
//! decodes is whatever the network delivered. Checks: no panic, and the work is bounded by the
//! header's size (capped here at 1 MB so one input cannot ask for 4 GB).

use rcall_unpack::{decode, header, MAX_PROBS};

pub fn run(data: &[u8]) {
    let Ok(h) = header(data) else { return };
    if h.size > 1 << 20 {
        return;
    }
    let mut out = vec![0u8; h.size];
    let mut probs = Box::new([0u16; MAX_PROBS]);
    let _ = decode(data, &mut out, &mut probs);
}
