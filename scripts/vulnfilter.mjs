// Reads govulncheck -format json on stdin and sorts what the code calls
// into findings in modules (dependencies: fix by upgrading them, here) and
// findings in the Go standard library (fixed by building with the Go
// release that names them). Prints one line per vulnerability; exits 1
// when a module finding exists, or a standard-library one and
// SWITCHBOARD_VULN_STDLIB=fail.
import { readFileSync } from "node:fs";

const text = readFileSync(0, "utf8");
// The output is a stream of pretty-printed JSON objects, one after another.
const objects = [];
let depth = 0, start = -1, inString = false, escaped = false;
for (let i = 0; i < text.length; i++) {
  const ch = text[i];
  if (inString) {
    if (escaped) escaped = false;
    else if (ch === "\\") escaped = true;
    else if (ch === '"') inString = false;
    continue;
  }
  if (ch === '"') inString = true;
  else if (ch === "{") { if (depth++ === 0) start = i; }
  else if (ch === "}" && --depth === 0) objects.push(JSON.parse(text.slice(start, i + 1)));
}
const summaries = new Map();
for (const o of objects) if (o.osv) summaries.set(o.osv.id, o.osv.summary || "");
const called = new Map(); // id -> {module, fixed, where}
for (const o of objects) {
  const f = o.finding;
  if (!f || !f.trace || !f.trace.length || !f.trace[0].function) continue; // not called
  const top = f.trace[0];
  const caller = f.trace[f.trace.length - 1];
  const where = caller.position ? `${caller.position.filename}:${caller.position.line}` : caller.package;
  if (!called.has(f.osv)) called.set(f.osv, { module: top.module, fixed: f.fixed_version || "none", where });
}
let modules = 0, stdlib = 0;
for (const [id, v] of [...called].sort()) {
  const kind = v.module === "stdlib" ? "stdlib" : v.module;
  if (kind === "stdlib") stdlib++; else modules++;
  console.log(`vuln: ${id} in ${kind}, fixed in ${v.fixed}, reached from ${v.where}: ${summaries.get(id)}`);
}
console.log(`vuln: ${modules} called in dependencies, ${stdlib} called in the standard library`);
if (stdlib > 0) {
  console.log("vuln: the standard-library ones are fixed by building with the Go release named above, not by code here");
}
process.exit(modules > 0 || (stdlib > 0 && process.env.SWITCHBOARD_VULN_STDLIB === "fail") ? 1 : 0);
