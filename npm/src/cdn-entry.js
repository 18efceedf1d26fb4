// Classic-script entry (appended after wasm-bindgen's no-modules glue inside one IIFE).
  const base = (document.currentScript && document.currentScript.src) || location.href;
  const wasmUrl = new URL('rcall_bg.wasm', base);
  const g = createRcallGlobals(
    () => wasm_bindgen({ module_or_path: wasmUrl }).then(() => wasm_bindgen),
    __RCALL_ENUMS__,
  );
  window.RongIMLib = g.RongIMLib;
  window.RCRTC = g.RCRTC;
  window.RCCall = g.RCCall;
