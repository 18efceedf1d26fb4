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

  // mode 'streaming': fetch + instantiateStreaming, as the SDK's loader does (imports derived
  // from a module compiled afterwards, so the timed compile is the first in this process).
  // mode 'compile': fetch the bytes first, then time WebAssembly.compile and instantiate.
  window.measureWasm = async function (url, mode) {
    var fresh = url + '?bench=' + Math.random();
    if (mode === 'streaming') {
      // No module to read the import list from before the timed compile: a Proxy answers
      // every import with a stub function (wasm-bindgen modules import only functions).
      var anyFn = function () { throw new Error('stub import'); };
      var mod = new Proxy({}, { get: function () { return anyFn; }, has: function () { return true; } });
      var imports = new Proxy({}, { get: function () { return mod; }, has: function () { return true; } });
      var t0 = now();
      var r = await WebAssembly.instantiateStreaming(fetch(fresh, { cache: 'no-store' }), imports);
      var ms = now() - t0;
      return { ms: ms, ok: !!r.instance };
    }
    var bytes = await (await fetch(fresh, { cache: 'no-store' })).arrayBuffer();
    var t1 = now();
    var m = await WebAssembly.compile(bytes);
    var t2 = now();
    await WebAssembly.instantiate(m, stubImports(m));
    var t3 = now();
    return { compile: t2 - t1, instantiate: t3 - t2, bytes: bytes.byteLength };
  };
})();
