#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| rcall_fuzz::server_api::run(data));
