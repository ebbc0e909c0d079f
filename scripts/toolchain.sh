#!/usr/bin/env bash
# Provide the pinned tools no reachable registry packages:
#   from the Go module proxy: pulumi (CLI) and the SDK's scripts beside it (pulumi-language-python-exec,
#     pulumi-resource-pulumi-python), livekit-server (current and previous pins);
#   from the pinned upstream source archives of the mirror ($VISIO_UPSTREAM_DIR, default
#     ../shared/upstream beside the checkout; sha256 pinned in toolchain/versions.env), dependencies
#     from the proxy: the upstream Python language host, and the resource plugins
#     pulumi-resource-openstack and pulumi-resource-random, then installed in $PULUMI_HOME's plugin
#     cache with `pulumi plugin install resource NAME VERSION --file ...`.
#
# Everything goes into a versioned cache outside the repo ($VISIO_TOOLCHAIN_DIR, default
# ~/.cache/visio-toolchain): <tool>-<version>/ is built in a temporary directory and renamed into
# place only once complete (a `.complete` stamp), so an interrupted build is never mistaken for a
# good one. A copy already on PATH is used when its version matches. A warm run takes seconds.
# bin/ holds symlinks to the pinned versions; put it on PATH (scripts/pulumi-env.sh does).
#
#   scripts/toolchain.sh [all|pulumi|livekit|plugins]
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=../toolchain/versions.env
source "$ROOT/toolchain/versions.env"
CACHE=${VISIO_TOOLCHAIN_DIR:-$HOME/.cache/visio-toolchain}
# The source mirror: an internal artifact mirror in a ministry's network, ../shared/upstream here.
UPSTREAM=${VISIO_UPSTREAM_DIR:-$ROOT/../shared/upstream}
export PULUMI_HOME=${PULUMI_HOME:-$HOME/.pulumi}
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

# ---------------------------------------------------------------- source archives of the mirror
# Unpack a pinned archive of the mirror into $2 after checking its sha256 against the pin; returns 1
# (with a message) when the mirror does not have it, dies when the checksum differs.
unpack_upstream() { # $1: archive name, $2: expected sha256, $3: destination directory
  local archive=$UPSTREAM/$1 got
  if [ ! -f "$archive" ]; then
    say "no source mirror entry $archive (set VISIO_UPSTREAM_DIR to the mirror holding $1)"
    return 1
  fi
  got=$(sha256sum "$archive" | cut -d' ' -f1)
  [ "$got" = "$2" ] || die "$archive: sha256 $got, pinned $2 in toolchain/versions.env: refusing a changed archive"
  tar -xzf "$archive" -C "$3"
}

# ---------------------------------------------------------------- Pulumi CLI + Python language host
pulumi_ok() { # $1: a pulumi binary; true when it prints the pinned version
  [ -x "$1" ] && [ "$("$1" version 2>/dev/null)" = "v$PULUMI_VERSION" ]
}

build_pulumi() {
  local dest=$CACHE/pulumi-$PULUMI_VERSION
  if [ -f "$dest/.complete" ]; then
    say "pulumi v$PULUMI_VERSION: cached in $dest"
  elif onpath=$(command -v pulumi) && pulumi_ok "$onpath" && [ "$onpath" != "$BIN/pulumi" ] \
       && [ -x "$(dirname "$onpath")/pulumi-language-python" ]; then
    say "pulumi v$PULUMI_VERSION: using the copy on PATH ($onpath)"
    local tool
    for tool in pulumi pulumi-language-python pulumi-language-python-exec pulumi-resource-pulumi-python; do
      [ -x "$(dirname "$onpath")/$tool" ] && link "$(dirname "$onpath")/$tool" "$tool"
    done
    return
  else
    say "pulumi v$PULUMI_VERSION: building the CLI from the Go module proxy (several minutes on 2 cores)"
    local t0=$SECONDS work pkg sdk host
    work=$(mktemp -d "$CACHE/.build-pulumi.XXXXXX")
    trap 'rm -rf "$work"; trap - RETURN' RETURN
    pkg=$(module_dir github.com/pulumi/pulumi/pkg/v3 "v$PULUMI_VERSION")
    sdk=$(module_dir github.com/pulumi/pulumi/sdk/v3 "v$PULUMI_VERSION")
    # pkg/go.mod says `replace .../sdk/v3 => ../sdk`, so `go install` refuses it: lay both out
    # side by side in a writable tree and build there.
    cp -r "$pkg" "$work/pkg"; cp -r "$sdk" "$work/sdk"; chmod -R u+w "$work"
    mkdir -p "$work/out/bin"
    (cd "$work/pkg" && go build -trimpath -o "$work/out/bin/pulumi" \
      -ldflags "-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=v$PULUMI_VERSION" \
      ./cmd/pulumi) || die "building the Pulumi CLI failed (see the Go errors above)"
    # The dynamic-provider launcher ships as a script in the SDK module.
    install -m 0755 "$sdk/python/dist/pulumi-resource-pulumi-python" "$work/out/bin/"
    # The upstream Python language host: its module is refused by the proxy, so it is built from the
    # mirror's archive of the same release, against pkg/sdk at the CLI's version from the proxy (its
    # go.mod points them at the monorepo with `replace`; those two lines are dropped).
    [ "$LANGUAGE_HOST_ARCHIVE" = "pulumi-language-python-$PULUMI_VERSION.tar.gz" ] \
      || die "toolchain/versions.env: LANGUAGE_HOST_ARCHIVE must be the host of v$PULUMI_VERSION, the CLI's version"
    mkdir -p "$work/host"
    unpack_upstream "$LANGUAGE_HOST_ARCHIVE" "$LANGUAGE_HOST_SHA256" "$work/host" \
      || die "the Python language host is built from the source mirror only (the proxy refuses its module)"
    host=$work/host/pulumi-$PULUMI_VERSION/sdk/python/cmd
    (cd "$host/pulumi-language-python" \
      && go mod edit -dropreplace github.com/pulumi/pulumi/pkg/v3 -dropreplace github.com/pulumi/pulumi/sdk/v3 \
           -require "github.com/pulumi/pulumi/pkg/v3@v$PULUMI_VERSION" \
           -require "github.com/pulumi/pulumi/sdk/v3@v$PULUMI_VERSION" \
      && go build -trimpath -o "$work/out/bin/pulumi-language-python" \
           -ldflags "-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=v$PULUMI_VERSION" .) \
      || die "building the upstream Python language host failed (see the Go errors above)"
    # The host refuses to start without its -exec shim beside it; take the one of the same release.
    install -m 0755 "$host/pulumi-language-python-exec" "$work/out/bin/"
    pulumi_ok "$work/out/bin/pulumi" || die "the built pulumi does not report v$PULUMI_VERSION"
    echo "build_seconds=$((SECONDS - t0))" > "$work/out/.complete"
    rm -rf "$dest"; mv "$work/out" "$dest"
    say "pulumi v$PULUMI_VERSION + Python language host: built in $((SECONDS - t0)) s"
  fi
  local tool
  for tool in pulumi pulumi-language-python pulumi-language-python-exec pulumi-resource-pulumi-python; do
    link "$dest/bin/$tool" "$tool"
  done
  rm -f "$BIN/pulumi-analyzer-policy-python"  # policy packs run through the language host
}

# ---------------------------------------------------------------- resource plugins
plugin_installed() { # $1: name, $2: version, $3: binary; true when $PULUMI_HOME has exactly that binary
  local f=$PULUMI_HOME/plugins/resource-$1-v$2/pulumi-resource-$1
  [ -x "$f" ] && cmp -s "$f" "$3"
}

build_plugin() { # $1: name (openstack|random), $2: version, $3: archive, $4: sha256, $5: module major (v5)
  local name=$1 ver=$2 dest=$CACHE/plugin-$1-$2
  if [ ! -f "$dest/.complete" ]; then
    local t0=$SECONDS work src
    work=$(mktemp -d "$CACHE/.build-plugin-$name.XXXXXX")
    trap 'rm -rf "$work"; trap - RETURN' RETURN
    if ! unpack_upstream "$3" "$4" "$work"; then
      # A workstation with internet and no mirror: the engine downloads the release itself.
      say "pulumi-resource-$name $ver: no source mirror, falling back to \`pulumi plugin install resource $name $ver\` (downloads the release)"
      "$BIN/pulumi" plugin install resource "$name" "$ver" \
        || die "pulumi-resource-$name $ver: no source mirror at $UPSTREAM and the download failed"
      return
    fi
    say "pulumi-resource-$name $ver: building from $3 (dependencies from the Go module proxy; minutes when cold)"
    src=$work/pulumi-$name-$ver/provider
    # Only the provider's own cmd package: the upstream Makefile and `go mod download` of the whole
    # module would pull tfgen's modules, which the proxy refuses.
    (cd "$src/cmd/pulumi-resource-$name" && VERSION=$ver go run ./generate.go) \
      || die "pulumi-resource-$name $ver: generating the embedded schema failed"
    mkdir -p "$work/out/bin"
    (cd "$src" && go build -trimpath -o "$work/out/bin/pulumi-resource-$name" \
      -ldflags "-s -w -X github.com/pulumi/pulumi-$name/provider/$5/pkg/version.Version=$ver" \
      "./cmd/pulumi-resource-$name") || die "building pulumi-resource-$name $ver failed (see the Go errors above)"
    echo "build_seconds=$((SECONDS - t0))" > "$work/out/.complete"
    rm -rf "$dest"; mv "$work/out" "$dest"
    say "pulumi-resource-$name $ver: built in $((SECONDS - t0)) s"
  else
    say "pulumi-resource-$name $ver: cached in $dest"
  fi
  if ! plugin_installed "$name" "$ver" "$dest/bin/pulumi-resource-$name"; then
    "$BIN/pulumi" plugin install resource "$name" "$ver" --file "$dest/bin/pulumi-resource-$name" >/dev/null \
      || die "pulumi plugin install resource $name $ver failed"
    say "pulumi-resource-$name $ver: installed in $PULUMI_HOME/plugins"
  fi
}

build_plugins() {
  build_plugin openstack "$OPENSTACK_PLUGIN_VERSION" "$OPENSTACK_PLUGIN_ARCHIVE" "$OPENSTACK_PLUGIN_SHA256" v5
  build_plugin random "$RANDOM_PLUGIN_VERSION" "$RANDOM_PLUGIN_ARCHIVE" "$RANDOM_PLUGIN_SHA256" v4
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
    trap 'rm -rf "$work"; trap - RETURN' RETURN
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
  plugins) build_pulumi; build_plugins ;;
  all)
    build_pulumi
    build_plugins
    build_livekit "$LIVEKIT_VERSION" livekit-server
    build_livekit "$LIVEKIT_PREVIOUS_VERSION" "livekit-server-$LIVEKIT_PREVIOUS_VERSION"
    ;;
  *) die "usage: scripts/toolchain.sh [all|pulumi|livekit|plugins]" ;;
esac
say "ready in $BIN: $("$BIN/pulumi" version 2>/dev/null || echo '?') / $("$BIN/livekit-server" --version 2>/dev/null || echo '?')"
