#!/usr/bin/env bash
# Static checks: staticcheck, and govulncheck against a local copy of the Go
# vulnerability database (vuln.go.dev is not reachable from every machine we
# run on). Tools and database are pinned and cached outside the repository,
# in ${SWITCHBOARD_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/switchboard-tools},
# one directory per name and version, so a rerun installs nothing.
#
# The database comes from the golang.org/x/vulndb module (served by the Go
# module proxy): its data/osv/*.json files are indexed into the v1 layout
# govulncheck reads from a file:// URL (index/db.json, index/modules.json,
# ID/<id>.json) by vulndb's own cmd/indexdb. To move to newer vulnerability
# data, bump VULNDB_VERSION to a newer pseudo-version of golang.org/x/vulndb.
#
# Exits non-zero when staticcheck reports anything, when govulncheck finds
# a called vulnerability in a dependency (or, with
# SWITCHBOARD_VULN_STDLIB=fail, in the standard library), or when either
# fails to run.
# LINT_JOBS=N limits the build parallelism of the one-off installs
# (go install -p N) and the threads the two tools use (GOMAXPROCS).
set -euo pipefail
cd "$(dirname "$0")/.."

STATICCHECK_VERSION=v0.8.2
GOVULNCHECK_VERSION=v1.9.0
VULNDB_VERSION=v0.0.0-20261105234957-e22db6528018

cache=${SWITCHBOARD_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/switchboard-tools}
mkdir -p "$cache"

say() { echo "lint: $*"; }

install_flags=()
if [ -n "${LINT_JOBS:-}" ]; then
  install_flags=(-p "$LINT_JOBS")
  export GOMAXPROCS=$LINT_JOBS
fi

# install_tool NAME PACKAGE VERSION: makes $cache/NAME-VERSION/NAME exist.
# Installs into a temporary directory next to it and renames it into place,
# so an interrupted install never leaves a half-written binary behind.
install_tool() {
  local name=$1 pkg=$2 version=$3
  local dir=$cache/$name-$version
  [ -x "$dir/$name" ] && return 0
  say "installing $pkg@$version into $dir"
  local tmp
  tmp=$(mktemp -d "$cache/.tmp-$name.XXXXXX")
  # Run outside the repository: pkg@version ignores the current module anyway,
  # and this keeps the repo's go.mod/go.sum out of it.
  (cd "$tmp" && GOBIN=$tmp/bin go install "${install_flags[@]}" "$pkg@$version")
  rm -rf "$dir"
  mv -T "$tmp/bin" "$dir"
  rm -rf "$tmp"
}

install_tool staticcheck honnef.co/go/tools/cmd/staticcheck "$STATICCHECK_VERSION"
install_tool govulncheck golang.org/x/vuln/cmd/govulncheck "$GOVULNCHECK_VERSION"
staticcheck=$cache/staticcheck-$STATICCHECK_VERSION/staticcheck
govulncheck=$cache/govulncheck-$GOVULNCHECK_VERSION/govulncheck

db=$cache/vulndb-$VULNDB_VERSION
if [ ! -f "$db/index/modules.json" ]; then
  install_tool indexdb golang.org/x/vulndb/cmd/indexdb "$VULNDB_VERSION"
  say "building the vulnerability database from golang.org/x/vulndb@$VULNDB_VERSION"
  tmp=$(mktemp -d "$cache/.tmp-vulndb.XXXXXX")
  src=$(cd "$tmp" && go mod download -json "golang.org/x/vulndb@$VULNDB_VERSION" |
    sed -n 's/^[[:space:]]*"Dir": "\(.*\)",*$/\1/p')
  if [ -z "$src" ] || [ ! -d "$src/data/osv" ]; then
    echo "lint: no data/osv in golang.org/x/vulndb@$VULNDB_VERSION (dir: ${src:-none})" >&2
    exit 1
  fi
  "$cache/indexdb-$VULNDB_VERSION/indexdb" -vulns "$src/data/osv" -out "$tmp/db"
  # A database that is empty or missing entries makes govulncheck report
  # "No vulnerabilities found" without complaint, so check it is whole.
  want=$(find "$src/data/osv" -maxdepth 1 -name 'GO-*.json' | wc -l)
  got=$(find "$tmp/db/ID" -maxdepth 1 -name 'GO-*.json' | wc -l)
  if [ "$want" -lt 1000 ] || [ "$got" -ne "$want" ] || ! grep -q '"path":"stdlib"' "$tmp/db/index/modules.json"; then
    echo "lint: vulnerability database looks wrong ($got of $want entries)" >&2
    exit 1
  fi
  rm -rf "$db"
  mv -T "$tmp/db" "$db"
  rm -rf "$tmp"
  say "vulnerability database: $got entries in $db"
fi

# Both tools expand ./... with `go list`, which honours go.mod's
# `ignore ./e2e/node/node_modules`; e2e/node itself holds no Go files.
# Without that line, any .go file an npm package ships is linted (or breaks
# the build), so insist on it.
if ! grep -q '"Path": "\./e2e/node/node_modules"' <<<"$(go mod edit -json)"; then
  echo "lint: go.mod lacks 'ignore ./e2e/node/node_modules'; staticcheck and govulncheck would scan npm packages" >&2
  exit 1
fi
status=0

say "staticcheck $STATICCHECK_VERSION ./..."
"$staticcheck" ./... || status=1

# A vulnerability the code reaches in a dependency fails the run (upgrade
# the module). One in the standard library is fixed by the Go release that
# builds the binary, not by code here: it is listed with the release that
# fixes it, and fails the run only with SWITCHBOARD_VULN_STDLIB=fail (set it
# where releases are built).
say "govulncheck $GOVULNCHECK_VERSION -db file://$db ./..."
if out=$("$govulncheck" -format json -db "file://$db" ./...); then
  node scripts/vulnfilter.mjs <<<"$out" || status=1
else
  echo "lint: govulncheck failed" >&2
  status=1
fi

if [ "$status" -ne 0 ]; then
  say "FAILED (see above)"
else
  say "ok"
fi
exit "$status"
