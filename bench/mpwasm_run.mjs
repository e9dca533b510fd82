// Run Python steps in the 32-bit WebAssembly MicroPython from npm
// (@micropython/micropython-webassembly-pyscript), used by bench/firmware_heap.py as a
// RAM meter whose object sizes match an ESP32's (the unix VM is 64-bit).
//
//   node bench/mpwasm_run.mjs PLAN.json
//
// PLAN: {"module": "<path to micropython.mjs>", "heapsize": <bytes>,
//        "files": [["<host path>", "<path in the VM's filesystem>"], ...],
//        "steps": [{"code": "<python>", "repeat": <n, default 1>}, ...]}
//
// Each step is one top-level runPython() call. This port grows its heap instead of
// collecting inside a call: gc.collect() in Python only schedules a collection, which
// runs when control is back at the top level, i.e. between two steps. So a step that
// ends with gc.collect() leaves the next step a collected heap, and within one step
// nothing is freed: gc.mem_alloc() at the end of a step is that step's peak.
// The files go into the port's in-memory filesystem (Emscripten MEMFS), which
// MicroPython sees through VfsPosix: open/rename/remove/stat work on it.
//
// Python's output goes to stdout line by line. Exit status: 0 when every step ran,
// 1 when a step raised (its traceback on stderr), 2 for a bad plan or a module that
// does not load.

import fs from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";

function fail(code, msg) {
  process.stderr.write(`mpwasm_run: ${msg}\n`);
  process.exit(code);
}

function mkdirs(FS, dir) {
  let p = "";
  for (const part of dir.split("/").filter(Boolean)) {
    p += "/" + part;
    try {
      FS.mkdir(p);
    } catch (e) {
      // EEXIST: already there
    }
  }
}

if (process.argv.length !== 3) fail(2, "usage: node mpwasm_run.mjs PLAN.json");
let plan;
try {
  plan = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
} catch (e) {
  fail(2, `cannot read the plan ${process.argv[2]}: ${e.message}`);
}

let loadMicroPython;
try {
  ({ loadMicroPython } = await import(pathToFileURL(plan.module).href));
} catch (e) {
  fail(2, `cannot load ${plan.module}: ${e.message}`);
}

const mp = await loadMicroPython({
  heapsize: plan.heapsize || 128 * 1024,
  linebuffer: true,
  stdout: (line) => process.stdout.write(line + "\n"),
  stderr: (line) => process.stderr.write(line + "\n"),
});

for (const [host, guest] of plan.files || []) {
  mkdirs(mp.FS, path.posix.dirname(guest));
  mp.FS.writeFile(guest, fs.readFileSync(host));
}

for (const step of plan.steps || []) {
  const n = step.repeat || 1;
  for (let i = 0; i < n; i++) {
    try {
      mp.runPython(step.code);
    } catch (e) {
      fail(1, `step failed (repeat ${i + 1} of ${n}): ${step.code.split("\n")[0]}\n${e.message || e}`);
    }
  }
}
