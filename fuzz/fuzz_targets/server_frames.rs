#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| rcall_fuzz::server_frames::run(data));
