// Classic-script entry (appended after wasm-bindgen's no-modules glue inside one IIFE).
  const base = (document.currentScript && document.currentScript.src) || location.href;
  const wasmUrl = new URL('rcall_bg.wasm', base);
  // rcall_bg.wasm is the unpacker (crates/unpack) with the SDK's module LZMA-compressed in it
  // (npm/pack-wasm.mjs): instantiated, it decodes the module into its memory. Any failure names
  // the file (a damaged download otherwise reads as a bare WebAssembly error).
  const load = () => fetch(wasmUrl)
    .then((r) => (r.ok ? r.arrayBuffer() : Promise.reject(Error('HTTP ' + r.status))))
    .then((bytes) => WebAssembly.instantiate(bytes))
    .then(({ instance: { exports: u } }) => {
      const at = u.unpack();
      if (at < 0) throw Error('unpack error ' + at);
      return wasm_bindgen({ module_or_path: new Uint8Array(u.memory.buffer, at, u.unpacked_len()) });
    })
    .then(() => wasm_bindgen, (e) => { throw Error('rcall: loading ' + wasmUrl + ' failed: ' + ((e && e.message) || e)); });
  const g = createRcallGlobals(load, __RCALL_ENUMS__);
  window.RongIMLib = g.RongIMLib;
  window.RCRTC = g.RCRTC;
  window.RCCall = g.RCCall;
