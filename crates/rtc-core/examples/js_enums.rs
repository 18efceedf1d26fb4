//! Prints the SDK's enum objects as JSON (used by `npm/build.sh` to embed them in the JS).
fn main() {
    println!("{}", rtc_core::types::enums_json());
}
