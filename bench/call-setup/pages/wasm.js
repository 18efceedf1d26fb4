// Compile / instantiate time of the SDK's wasm module, measured directly (no SDK glue runs): the
// imports are stubs, which is enough to instantiate (wasm-bindgen's start function runs only when
// its glue calls it). V8 keeps compiled modules per renderer process (keyed by the bytes), so
// run.mjs measures each sample in a fresh browser context (a fresh renderer process): cold.
(function () {
  'use strict';
  var now = function () { return performance.now(); };
  window.B = { ready: true };

  function stubImports(mod) {
    var imports = {};
    WebAssembly.Module.imports(mod).forEach(function (imp) {
      imports[imp.module] = imports[imp.module] || {};
      if (imp.kind === 'function') imports[imp.module][imp.name] = function () { throw new Error('stub import ' + imp.name); };
      else if (imp.kind === 'memory') imports[imp.module][imp.name] = new WebAssembly.Memory({ initial: 32 });
      else if (imp.kind === 'table') imports[imp.module][imp.name] = new WebAssembly.Table({ initial: 128, element: 'anyfunc' });
      else if (imp.kind === 'global') imports[imp.module][imp.name] = new WebAssembly.Global({ value: 'i32', mutable: false }, 0);
    });
    return imports;
  }

  // The CDN's rcall_bg.wasm is the unpacker carrying the SDK's module LZMA-compressed
  // (crates/unpack): the module is what unpack() returns.
  async function unpacked(bytes) {
    var u = (await WebAssembly.instantiate(bytes)).instance.exports;
    var at = u.unpack();
    if (at < 0) throw new Error('unpack error ' + at);
    return new Uint8Array(u.memory.buffer, at, u.unpacked_len());
  }

  // mode 'load': fetch + unpack + compile + instantiate, as the SDK's CDN loader does.
  // mode 'compile': fetch the bytes first, then time the unpacking, WebAssembly.compile and
  // instantiate apart.
  window.measureWasm = async function (url, mode) {
    var fresh = url + '?bench=' + Math.random();
    if (mode === 'load') {
      var t0 = now();
      var sdk = await unpacked(await (await fetch(fresh, { cache: 'no-store' })).arrayBuffer());
      var loaded = await WebAssembly.compile(sdk);
      await WebAssembly.instantiate(loaded, stubImports(loaded));
      return { ms: now() - t0 };
    }
    var bytes = await (await fetch(fresh, { cache: 'no-store' })).arrayBuffer();
    var t1 = now();
    var module = await unpacked(bytes);
    var t2 = now();
    var m = await WebAssembly.compile(module);
    var t3 = now();
    await WebAssembly.instantiate(m, stubImports(m));
    var t4 = now();
    return { unpack: t2 - t1, compile: t3 - t2, instantiate: t4 - t3, bytes: module.byteLength };
  };
})();
