#!/usr/bin/env bash
# Provide the pinned tools no reachable registry packages, built from the Go module proxy:
#   pulumi (CLI), pulumi-language-python (+ the -exec shim beside it), pulumi-resource-pulumi-python,
#   pulumi-analyzer-policy-python, livekit-server (current and previous pins).
#
# Everything goes into a versioned cache outside the repo ($VISIO_TOOLCHAIN_DIR, default
# ~/.cache/visio-toolchain): <tool>-<version>/ is built in a temporary directory and renamed into
# place only once complete (a `.complete` stamp), so an interrupted build is never mistaken for a
# good one. A copy already on PATH is used when its version matches. A warm run takes seconds.
# bin/ holds symlinks to the pinned versions; put it on PATH (scripts/pulumi-env.sh does).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=../toolchain/versions.env
source "$ROOT/toolchain/versions.env"
CACHE=${VISIO_TOOLCHAIN_DIR:-$HOME/.cache/visio-toolchain}
BIN=$CACHE/bin
export CGO_ENABLED=0 GOFLAGS="-mod=mod -buildvcs=false" GOTOOLCHAIN=local
mkdir -p "$BIN"
# One build at a time per cache; leftovers of an interrupted build are removed, never reused.
exec 9>"$CACHE/.lock"
flock 9
rm -rf "$CACHE"/.build-*

say() { printf '\033[1m[toolchain]\033[0m %s\n' "$*"; }
die() { printf '\033[31m[toolchain] ERROR:\033[0m %s\n' "$*" >&2; exit 1; }

command -v go >/dev/null || die "Go is not installed (it comes with this machine kind; apt-get install golang as a fallback)."

# Download one module version from the proxy and print its directory in the module cache.
module_dir() {
  local mod=$1 ver=$2 json dir err
  json=$(go mod download -json "$mod@$ver" 2>&1) || true
  dir=$(printf '%s' "$json" | python3 -c 'import json,sys; print(json.load(sys.stdin).get("Dir",""))' 2>/dev/null || true)
  if [ -z "$dir" ]; then
    err=$(printf '%s' "$json" | python3 -c 'import json,sys; print(json.load(sys.stdin).get("Error",""))' 2>/dev/null || echo "$json")
    die "the Go module proxy did not provide $mod@$ver: $err"
  fi
  printf '%s' "$dir"
}

# Link a finished, versioned install into bin/.
link() { ln -sfn "$1" "$BIN/$2"; }

# ---------------------------------------------------------------- Pulumi CLI + Python plugins
pulumi_ok() { # $1: a pulumi binary; true when it prints the pinned version
  [ -x "$1" ] && [ "$("$1" version 2>/dev/null)" = "v$PULUMI_VERSION" ]
}

build_pulumi() {
  # The cache key includes a hash of the project's own plugin sources, so editing them rebuilds.
  local own dest
  own=$(cd "$ROOT/toolchain" && cat pulumi-language-python/go.mod pulumi-language-python/*.go \
        pulumi-analyzer-policy-python | sha256sum | cut -c1-12)
  dest=$CACHE/pulumi-$PULUMI_VERSION-$own
  if [ -f "$dest/.complete" ]; then
    say "pulumi v$PULUMI_VERSION: cached in $dest"
  elif onpath=$(command -v pulumi) && pulumi_ok "$onpath" && [ "$onpath" != "$BIN/pulumi" ] \
       && [ -x "$(dirname "$onpath")/pulumi-language-python" ]; then
    say "pulumi v$PULUMI_VERSION: using the copy on PATH ($onpath)"
    local tool
    for tool in pulumi pulumi-language-python pulumi-language-python-exec pulumi-resource-pulumi-python; do
      [ -x "$(dirname "$onpath")/$tool" ] && link "$(dirname "$onpath")/$tool" "$tool"
    done
    link "$ROOT/toolchain/pulumi-analyzer-policy-python" pulumi-analyzer-policy-python
    return
  else
    say "pulumi v$PULUMI_VERSION: building the CLI from the Go module proxy (several minutes on 2 cores)"
    local t0=$SECONDS work pkg sdk
    work=$(mktemp -d "$CACHE/.build-pulumi.XXXXXX")
    trap 'rm -rf "$work"' RETURN
    pkg=$(module_dir github.com/pulumi/pulumi/pkg/v3 "v$PULUMI_VERSION")
    sdk=$(module_dir github.com/pulumi/pulumi/sdk/v3 "v$PULUMI_VERSION")
    # pkg/go.mod says `replace .../sdk/v3 => ../sdk`, so `go install` refuses it: lay both out
    # side by side in a writable tree and build there.
    cp -r "$pkg" "$work/pkg"; cp -r "$sdk" "$work/sdk"; chmod -R u+w "$work"
    mkdir -p "$work/out/bin"
    (cd "$work/pkg" && go build -trimpath -o "$work/out/bin/pulumi" \
      -ldflags "-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=v$PULUMI_VERSION" \
      ./cmd/pulumi) || die "building the Pulumi CLI failed (see the Go errors above)"
    # Shims that ship as scripts in the SDK module, used by the language host and dynamic providers.
    install -m 0755 "$sdk/python/cmd/pulumi-language-python-exec" "$work/out/bin/"
    install -m 0755 "$sdk/python/dist/pulumi-resource-pulumi-python" "$work/out/bin/"
    # The official Python language host module is refused by the proxy (see toolchain/README.md):
    # build the project's own host from toolchain/pulumi-language-python.
    (cd "$ROOT/toolchain/pulumi-language-python" && go build -trimpath -o "$work/out/bin/pulumi-language-python" \
      -ldflags "-s -w -X main.version=$PULUMI_VERSION" .) \
      || die "building the project's Python language host failed"
    install -m 0755 "$ROOT/toolchain/pulumi-analyzer-policy-python" "$work/out/bin/"
    pulumi_ok "$work/out/bin/pulumi" || die "the built pulumi does not report v$PULUMI_VERSION"
    echo "build_seconds=$((SECONDS - t0))" > "$work/out/.complete"
    rm -rf "$dest"; mv "$work/out" "$dest"
    say "pulumi v$PULUMI_VERSION: built in $((SECONDS - t0)) s"
  fi
  local tool
  for tool in pulumi pulumi-language-python pulumi-language-python-exec pulumi-resource-pulumi-python \
              pulumi-analyzer-policy-python; do
    link "$dest/bin/$tool" "$tool"
  done
}

# ---------------------------------------------------------------- LiveKit server
build_livekit() { # $1: version, $2: link name
  local ver=$1 name=$2 dest=$CACHE/livekit-$1
  if [ -f "$dest/.complete" ]; then
    say "livekit-server $ver: cached in $dest"
  elif onpath=$(command -v livekit-server) && [ "$onpath" != "$BIN/$name" ] \
       && "$onpath" --version 2>/dev/null | grep -q "version $ver\$"; then
    say "livekit-server $ver: using the copy on PATH ($onpath)"
    link "$onpath" "$name"; return
  else
    say "livekit-server $ver: building from the Go module proxy (a few minutes)"
    local t0=$SECONDS work src
    work=$(mktemp -d "$CACHE/.build-livekit.XXXXXX")
    trap 'rm -rf "$work"' RETURN
    src=$(module_dir github.com/livekit/livekit-server "v$ver")
    # Its go.mod replaces pion modules with LiveKit forks, so `go install` refuses it too.
    cp -r "$src" "$work/src"; chmod -R u+w "$work/src"; mkdir -p "$work/out/bin"
    (cd "$work/src" && go build -trimpath -ldflags "-s -w" -o "$work/out/bin/livekit-server" ./cmd/server) \
      || die "building livekit-server $ver failed (see the Go errors above)"
    "$work/out/bin/livekit-server" --version | grep -q "version $ver\$" \
      || die "the built livekit-server does not report version $ver"
    echo "build_seconds=$((SECONDS - t0))" > "$work/out/.complete"
    rm -rf "$dest"; mv "$work/out" "$dest"
    say "livekit-server $ver: built in $((SECONDS - t0)) s"
  fi
  link "$dest/bin/livekit-server" "$name"
}

case "${1:-all}" in
  pulumi) build_pulumi ;;
  livekit) build_livekit "$LIVEKIT_VERSION" livekit-server ;;
  all)
    build_pulumi
    build_livekit "$LIVEKIT_VERSION" livekit-server
    build_livekit "$LIVEKIT_PREVIOUS_VERSION" "livekit-server-$LIVEKIT_PREVIOUS_VERSION"
    ;;
  *) die "usage: scripts/toolchain.sh [all|pulumi|livekit]" ;;
esac
say "ready in $BIN: $("$BIN/pulumi" version 2>/dev/null || echo '?') / $("$BIN/livekit-server" --version 2>/dev/null || echo '?')"
