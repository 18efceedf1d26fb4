//! The module's two exports. `npm/pack-wasm.mjs` puts a data segment at `__heap_base`: the
//! packed module's length (u32, little-endian), then the `.lzma` file. `unpack` decodes it into
//! memory it grows after that and returns where the module starts (or a negative
//! [`Error::code`](crate::Error::code)); `unpacked_len` is its length.

use core::arch::wasm32;

use crate::{decode, header, MAX_PROBS};

static mut PROBS: [u16; MAX_PROBS] = [0; MAX_PROBS];
static mut UNPACKED_LEN: usize = 0;

extern "C" {
    /// The first byte past the linker's data and stack: where the packer's segment starts.
    static __heap_base: u8;
}

#[no_mangle]
pub extern "C" fn unpack() -> i32 {
    // SAFETY: single-threaded module; `__heap_base` is a linker symbol, the segment behind it
    // is the packer's (length then bytes), and the output lies past it in memory grown here.
    unsafe {
        let at = &raw const __heap_base as usize;
        let len = u32::from_le_bytes(*(at as *const [u8; 4])) as usize;
        let input = core::slice::from_raw_parts((at + 4) as *const u8, len);
        let size = match header(input) {
            Ok(h) => h.size,
            Err(e) => return e.code(),
        };
        let out_at = (at + 4 + len + 7) & !7;
        let pages = (out_at + size).div_ceil(65536);
        let have = wasm32::memory_size(0);
        if pages > have && wasm32::memory_grow(0, pages - have) == usize::MAX {
            return crate::Error::OutOfMemory.code();
        }
        let out = core::slice::from_raw_parts_mut(out_at as *mut u8, size);
        let probs = &raw mut PROBS;
        match decode(input, out, &mut *probs) {
            Ok(()) => {
                UNPACKED_LEN = size;
                out_at as i32
            }
            Err(e) => e.code(),
        }
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
