//! The module's two exports. `npm/pack-wasm.mjs` puts a data segment at `__heap_base`: the
//! payload's length (u32, little-endian), then the payload ([`crate::container`]). `unpack`
//! grows the memory past it for the module, then the streams' scratch space, decodes the
//! streams and joins them, and returns where the module starts (or a negative
//! [`Error::code`](crate::Error::code)); `unpacked_len` is its length.

use core::arch::wasm32;

use crate::container::unpack as unpack_into;
use crate::{Error, MAX_PROBS};

static mut PROBS: [u16; MAX_PROBS] = [0; MAX_PROBS];
static mut UNPACKED_LEN: usize = 0;

extern "C" {
    /// The first byte past the linker's data and stack: where the packer's segment starts.
    static __heap_base: u8;
}

#[no_mangle]
pub extern "C" fn unpack() -> i32 {
    match run() {
        Ok(at) => at as i32,
        Err(e) => e.code(),
    }
}

fn run() -> Result<usize, Error> {
    // SAFETY: single-threaded module; `__heap_base` is a linker symbol, the segment behind it
    // is the packer's (length then bytes), and the output and scratch lie past it in memory
    // grown here.
    unsafe {
        let at = &raw const __heap_base as usize;
        let len = u32::from_le_bytes(*(at as *const [u8; 4])) as usize;
        let payload = core::slice::from_raw_parts((at + 4) as *const u8, len);
        let out_at = at + 4 + len;
        let memory = |module_len: usize, scratch_len: usize| {
            let scratch_at = out_at.checked_add(module_len)?;
            let end = scratch_at.checked_add(scratch_len)?;
            let pages = end.div_ceil(65536);
            let have = wasm32::memory_size(0);
            if pages > have && wasm32::memory_grow(0, pages - have) == usize::MAX {
                return None;
            }
            Some((
                core::slice::from_raw_parts_mut(out_at as *mut u8, module_len),
                core::slice::from_raw_parts_mut(scratch_at as *mut u8, scratch_len),
            ))
        };
        let probs = &raw mut PROBS;
        UNPACKED_LEN = unpack_into(payload, &mut *probs, memory)?.len();
        Ok(out_at)
    }
}

#[no_mangle]
pub extern "C" fn unpacked_len() -> usize {
    // SAFETY: single-threaded module.
    unsafe { UNPACKED_LEN }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    wasm32::unreachable()
}
