#!/usr/bin/env bash
# Build the rig's Go tools from the module proxy and cache them outside the repo.
#
# Each directory under hack/rig/ holding a go.mod is a wrapper module whose `tool` directives name
# the binaries to build. Binaries are cached under $PROCJOB_RIG_CACHE (default
# ~/.cache/procjob-rig) in a directory keyed by sha256(go.mod, go.sum, go version, build flags),
# so a warm cache rebuilds nothing and a bump of any pin builds afresh. .rig/bin links them.
#
# Usage: hack/rig/build.sh [MODULE...]   (default: every module)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cache=${PROCJOB_RIG_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/procjob-rig}
bindir="$root/.rig/bin"
export GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=0

command -v go >/dev/null || { echo "rig build: 'go' not found on PATH (Go >= 1.26 is needed)" >&2; exit 1; }

k8s_version() {  # go.mod may say `require k8s.io/kubernetes vX` on one line or inside a block
  awk '$1=="require" && $2=="k8s.io/kubernetes"{print $3; exit} $1=="k8s.io/kubernetes"{print $2; exit}' \
    "$here/k8s/go.mod"
}

ldflags_for() {
  case "$1" in
    k8s|kubelet)
      local v; v=$(k8s_version); local minor=${v#v1.}; minor=${minor%%.*}
      local x="-X k8s.io/component-base/version"
      echo "-s -w $x.gitVersion=$v $x.gitMajor=1 $x.gitMinor=$minor $x.gitTreeState=clean -X k8s.io/client-go/pkg/version.gitVersion=$v"
      ;;
    *) echo "-s -w" ;;
  esac
}

heartbeat() {  # print elapsed time while a long build runs
  local name=$1 start=$SECONDS
  while sleep 30; do echo "  ... still building $name ($((SECONDS - start))s elapsed)"; done
}

build_module() {
  local mod=$1 dir="$here/$1"
  [ -f "$dir/go.mod" ] || { echo "rig build: no wrapper module $dir" >&2; exit 1; }
  local flags; flags=$(ldflags_for "$mod")
  local key
  key=$( { cat "$dir/go.mod" "$dir/go.sum"; go version; echo "$flags grpcnotrace"; } | sha256sum | cut -c1-16)
  local dest="$cache/$mod-$key"
  local tools; tools=$(awk '/^tool \(/{t=1; next} t&&/^\)/{t=0} t{print $1} /^tool [^(]/{print $2}' "$dir/go.mod")
  if [ ! -f "$dest/.complete" ]; then
    echo "rig build: $mod (cold: go build of $(echo $tools | wc -w) tool(s); see .rig/logs/build-$mod.log)"
    mkdir -p "$cache" "$root/.rig/logs"
    local tmp; tmp=$(mktemp -d "$cache/.tmp-$mod-XXXXXX")
    heartbeat "$mod" & local hb=$!
    local start=$SECONDS
    if ! (cd "$dir" && GOBIN="$tmp" go install -trimpath -tags=grpcnotrace -ldflags="$flags" tool) \
        >"$root/.rig/logs/build-$mod.log" 2>&1; then
      kill "$hb" 2>/dev/null; wait "$hb" 2>/dev/null || true
      rm -rf "$tmp"
      echo "rig build: building $mod failed; last lines of .rig/logs/build-$mod.log:" >&2
      tail -n 15 "$root/.rig/logs/build-$mod.log" >&2
      exit 1
    fi
    kill "$hb" 2>/dev/null; wait "$hb" 2>/dev/null || true
    touch "$tmp/.complete"
    rm -rf "$dest"; mv "$tmp" "$dest"
    echo "rig build: $mod built in $((SECONDS - start))s"
  fi
  mkdir -p "$bindir"
  local t bin link
  for t in $tools; do
    bin=$(basename "$(echo "$t" | sed -E 's#/v[0-9]+$##')")  # go names a binary without its /vN suffix
    link=$bin
    [ "$t" = go.etcd.io/etcd/server/v3 ] && link=etcd
    ln -sfn "$dest/$bin" "$bindir/$link"
  done
}

modules=("$@")
[ ${#modules[@]} -gt 0 ] || modules=(etcd k8s kwok helm s3 kubelet coredns)
for m in "${modules[@]}"; do build_module "$m"; done
