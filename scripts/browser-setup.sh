#!/usr/bin/env bash
# Sets up what the browser tests in e2e/ need: Debian's chromium at
# /usr/bin/chromium (installed with apt only when missing and we are root)
# and the pinned npm packages in e2e/node (npm ci, only when node_modules
# does not already match package-lock.json). Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -x /usr/bin/chromium ]; then
  echo "browser-setup: chromium present ($(/usr/bin/chromium --version 2>/dev/null || echo unknown version))"
elif [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "browser-setup: installing chromium with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
  echo "browser-setup: installed $(/usr/bin/chromium --version 2>/dev/null || echo chromium)"
else
  echo "browser-setup: /usr/bin/chromium is missing and cannot be installed here (need root and apt-get);" >&2
  echo "browser-setup: install Debian's chromium package, or set SWITCHBOARD_SKIP_BROWSER=1" >&2
  exit 1
fi

if ! command -v npm >/dev/null; then
  echo "browser-setup: npm not found; install Node.js 20+ and npm" >&2
  exit 1
fi
# npm ci writes node_modules/.package-lock.json; when it equals the lock file
# (apart from the top-level entry) the tree is already what the lock asks for.
lock=e2e/node/package-lock.json
hidden=e2e/node/node_modules/.package-lock.json
if [ -f "$hidden" ] && node -e '
  const fs = require("fs");
  const a = JSON.parse(fs.readFileSync(process.argv[1])).packages;
  const b = JSON.parse(fs.readFileSync(process.argv[2])).packages;
  delete a[""];
  const norm = (o) => JSON.stringify(Object.keys(o).sort().map((k) => [k, o[k].version, o[k].integrity]));
  process.exit(norm(a) === norm(b) ? 0 : 1);
' "$lock" "$hidden" 2>/dev/null; then
  echo "browser-setup: e2e/node/node_modules up to date"
else
  echo "browser-setup: npm ci in e2e/node"
  (cd e2e/node && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi
echo "browser-setup: done"
