//! `rcall-pack SDK.wasm PAYLOAD`: writes the payload the CDN's unpacker module carries
//! (`npm/build.sh` runs it; `npm/pack-wasm.mjs` puts the payload into the unpacker).

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [module, payload] = args.as_slice() else {
        eprintln!("usage: rcall-pack SDK.wasm PAYLOAD");
        return ExitCode::from(2);
    };
    let packed = std::fs::read(module)
        .map_err(|e| format!("reading {module}: {e}"))
        .and_then(|m| rcall_unpack::pack::pack(&m).map_err(|e| format!("{module}: {e}")))
        .and_then(|p| std::fs::write(payload, p).map_err(|e| format!("writing {payload}: {e}")));
    match packed {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rcall-pack: {e}");
            ExitCode::FAILURE
        }
    }
}
