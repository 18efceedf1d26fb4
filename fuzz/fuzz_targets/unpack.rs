#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| rcall_fuzz::unpack::run(data));
