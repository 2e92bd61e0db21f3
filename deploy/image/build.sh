#!/bin/sh
# `make image`: build the Dockerfile with buildah (chroot isolation, no daemon, as root) and tag it
# augserve:<version>. Where no registry is reachable (BASE unset), the base is made from Debian
# packages with mmdebstrap first. This machine's pip settings (index URLs, find-links, CA bundle)
# reach the build as a secret and read-only mounts, never a layer.
set -eu
VERSION=$1
TAG=${IMAGE_TAG:-augserve:$VERSION}
LOCAL_BASE=localhost/augserve-base:bookworm
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
PIP=${PIP:-python3 -m pip}

[ "$(id -u)" = 0 ] || { echo "make image: buildah here needs root (or use docker build, docs/deploy.md)" >&2; exit 2; }
for tool in buildah mmdebstrap; do
    command -v $tool >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq buildah mmdebstrap >/dev/null; }
done

if [ -z "${BASE:-}" ]; then
    BASE=$LOCAL_BASE
    if ! buildah inspect --type image $BASE >/dev/null 2>&1; then
        echo "make image: building the base $BASE from Debian bookworm packages (mmdebstrap)"
        container=$(buildah from scratch)
        mmdebstrap --quiet --variant=minbase --include=python3.11,python3.11-venv,ca-certificates,passwd \
            --aptopt='APT::Install-Recommends "false"' bookworm "$(buildah mount $container)" $DEBIAN_MIRROR
        buildah umount $container >/dev/null
        buildah commit --quiet $container $BASE >/dev/null
        buildah rm $container >/dev/null
    fi
fi

# This machine's pip settings as one pip.conf; local folders it names are mounted read-only at the same paths.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
volumes=""
{
    $PIP config list 2>/dev/null | sed -n "s/^global\.\([a-z-]*\)='\(.*\)'$/\1 = \2/p"
    [ -n "${PIP_FIND_LINKS:-}" ] && echo "find-links = $PIP_FIND_LINKS"
    [ -n "${PIP_EXTRA_INDEX_URL:-}" ] && echo "extra-index-url = $PIP_EXTRA_INDEX_URL"
    [ -n "${PIP_INDEX_URL:-}" ] && echo "index-url = $PIP_INDEX_URL"
    [ -n "${PIP_DEFAULT_TIMEOUT:-}" ] && echo "timeout = $PIP_DEFAULT_TIMEOUT"
    true
} | sed 's#^cert = .*#cert = /run/host-ca.crt#' \
  | awk -F' = ' '{value[$1] = $0; if (!($1 in seen)) order[++n] = $1; seen[$1] = 1}
                 END {print "[global]"; for (i = 1; i <= n; i++) print value[order[i]]}' > "$work/pip.conf"
for path in $(grep -o 'file://[^ ]*\|/[^ ]*' "$work/pip.conf" | sed 's#^file://##' | grep -v '^/run/host-ca.crt$' | sort -u); do
    top=$(echo "$path" | cut -d/ -f1-3)
    [ -d "$top" ] && case " $volumes " in *" $top:"*) ;; *) volumes="$volumes $top:$top:ro";; esac
done
ca=${PIP_CERT:-$($PIP config get global.cert 2>/dev/null || true)}
[ -n "$ca" ] && [ -f "$ca" ] && volumes="$volumes $ca:/run/host-ca.crt:ro"
grep -q '^cert' "$work/pip.conf" || { [ -n "$ca" ] && echo "cert = /run/host-ca.crt" >> "$work/pip.conf"; }

set --
for volume in $volumes; do set -- "$@" --volume "$volume"; done
started=$(date +%s)
buildah build --isolation chroot --layers --quiet --format docker --build-arg BASE=$BASE --secret id=pip.conf,src="$work/pip.conf" \
    "$@" --tag "$TAG" . >/dev/null
echo "make image: built $TAG from $BASE in $(( $(date +%s) - started )) s; size $(buildah images --format '{{.Size}}' "$TAG")"
