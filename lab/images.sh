#!/usr/bin/env bash
# Build the lab's images without any registry: debootstrap Debian root file systems
# (cached), import them as base images, then docker-build the service images on top.
# An image is rebuilt only when the hash of its build context changes (see README).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CACHE_DIR="${RECONCILE_LAB_CACHE_DIR:-/var/cache/reconcile-lab}"
MIRROR="${RECONCILE_LAB_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SUITES=(bookworm trixie)
# Bump to force every image to rebuild (e.g. after changing how images are built).
BUILD_SCHEME=1
HASH_LABEL=reconcile-lab.context-hash
VERSION_LABEL=reconcile-lab.version

# tag | context dir under lab/images | version label | build args
IMAGES=(
    "reconcile-lab/postgres:15|postgres|15|BASE=reconcile-lab/debian:bookworm PG_MAJOR=15"
    "reconcile-lab/postgres:17|postgres|17|BASE=reconcile-lab/debian:trixie PG_MAJOR=17"
    "reconcile-lab/redis:7|redis|7|BASE=reconcile-lab/debian:bookworm"
    "reconcile-lab/nginx:latest|nginx|latest|BASE=reconcile-lab/debian:bookworm"
    "reconcile-lab/app:1|app|1|BASE=reconcile-lab/debian:bookworm APP_VERSION=1"
    "reconcile-lab/app:2|app|2|BASE=reconcile-lab/debian:bookworm APP_VERSION=2"
)

BUILD_NETWORK="${RECONCILE_LAB_BUILD_NETWORK:-}"
REBUILT=0

ensure_tools() {
    local missing=()
    command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
    command -v zstd >/dev/null 2>&1 || missing+=(zstd)
    [ -e /usr/share/keyrings/debian-archive-keyring.gpg ] || missing+=(debian-archive-keyring)
    if [ "${#missing[@]}" -gt 0 ]; then
        apt_install "${missing[@]}"
    fi
}

make_rootfs() {
    local suite="$1" dir="$CACHE_DIR/rootfs-$1"
    [ -x "$dir/bin/bash" ] && [ -e "$dir/etc/os-release" ] && return 0
    ensure_tools
    as_root mkdir -p "$CACHE_DIR"
    as_root rm -rf "$dir.partial"
    log "debootstrap $suite into $dir (about a minute)"
    run_logged "$LAB_RUN_DIR/debootstrap-$suite.log" \
        as_root debootstrap --variant=minbase "$suite" "$dir.partial" "$MIRROR"
    as_root mv "$dir.partial" "$dir"
}

# Container-friendly defaults, written into the rootfs right before each import.
tweak_rootfs() {
    local dir="$1"
    as_root tee "$dir/usr/sbin/policy-rc.d" >/dev/null <<'CONF'
#!/bin/sh
# Never start services while building images.
exit 101
CONF
    as_root chmod 755 "$dir/usr/sbin/policy-rc.d"
    as_root tee "$dir/etc/apt/apt.conf.d/90reconcile-lab" >/dev/null <<'CONF'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Acquire::Languages "none";
CONF
    as_root mkdir -p "$dir/etc/dpkg/dpkg.cfg.d"
    as_root tee "$dir/etc/dpkg/dpkg.cfg.d/90reconcile-lab-excludes" >/dev/null <<'CONF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
CONF
}

import_rootfs() {
    local dir="$1" tag="$2" suite="$3"
    as_root tar -C "$dir" \
        --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' \
        --exclude='./var/cache/apt/archives/*.deb' --exclude='./var/lib/apt/lists/*' \
        -c . |
        docker import \
            -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
            -c 'ENV LANG=C.UTF-8' \
            -c "LABEL $VERSION_LABEL=$suite" \
            -c 'CMD ["bash"]' \
            - "$tag"
}

ensure_base() {
    local suite="$1" tag="reconcile-lab/debian:$1"
    docker image inspect "$tag" >/dev/null 2>&1 && return 0
    make_rootfs "$suite"
    tweak_rootfs "$CACHE_DIR/rootfs-$suite"
    log "importing $tag"
    run_logged "$LAB_RUN_DIR/import-$suite.log" import_rootfs "$CACHE_DIR/rootfs-$suite" "$tag" "$suite"
}

# host and port of the mirror URL, e.g. "deb.debian.org 80"
mirror_endpoint() {
    local rest="${MIRROR#*://}" port=80
    rest="${rest%%/*}"
    [[ "$MIRROR" == https://* ]] && port=443
    if [[ "$rest" == *:* ]]; then port="${rest##*:}"; rest="${rest%:*}"; fi
    printf '%s %s\n' "$rest" "$port"
}

# Can a container on the given network open a TCP connection to the Debian mirror?
mirror_reachable() {
    local host port
    read -r host port <<<"$(mirror_endpoint)"
    timeout 30 docker run --rm --network "$1" reconcile-lab/debian:bookworm \
        bash -c "exec 3<>/dev/tcp/$host/$port" >/dev/null 2>&1
}

choose_build_network() {
    [ -n "$BUILD_NETWORK" ] && return 0
    if mirror_reachable bridge; then
        BUILD_NETWORK=default
    elif mirror_reachable host; then
        log "containers on the bridge network cannot reach $MIRROR; building with --network host"
        BUILD_NETWORK=host
    else
        die "no container network reaches the Debian mirror $MIRROR (tried bridge and host)"
    fi
}

file_digests() {
    local ctx="$1" path mode
    (
        cd "$ctx"
        find . -name __pycache__ -prune -o -type f ! -name '*.pyc' -printf '%P %m\n' |
            LC_ALL=C sort | while read -r path mode; do
            printf '%s %s %s\n' "$path" "$mode" "$(sha256sum <"$path" | cut -d' ' -f1)"
        done
    )
}

context_hash() {
    local ctx="$1" args="$2" base="$3"
    {
        printf 'scheme=%s\nargs=%s\nbase=%s\n' "$BUILD_SCHEME" "$args" \
            "$(docker image inspect -f '{{.Id}}' "$base")"
        file_digests "$ctx"
    } | sha256sum | cut -d' ' -f1
}

build_image() {
    local tag="$1" ctx="$2" version="$3" args="$4" hash="$5" arg
    local cmd=(docker build --network "$BUILD_NETWORK" -t "$tag"
        --label "$HASH_LABEL=$hash" --label "$VERSION_LABEL=$version")
    for arg in $args; do cmd+=(--build-arg "$arg"); done
    log "building $tag (log: $LAB_RUN_DIR/build-${tag//[\/:]/_}.log)"
    run_logged "$LAB_RUN_DIR/build-${tag//[\/:]/_}.log" env DOCKER_BUILDKIT=0 "${cmd[@]}" "$ctx"
    REBUILT=1
}

ensure_image() {
    local tag ctx version args base hash current
    IFS='|' read -r tag ctx version args <<<"$1"
    ctx="$LAB_DIR/images/$ctx"
    base="$(tr ' ' '\n' <<<"$args" | sed -n 's/^BASE=//p')"
    hash="$(context_hash "$ctx" "$args" "$base")"
    current="$(docker image inspect -f "{{index .Config.Labels \"$HASH_LABEL\"}}" "$tag" 2>/dev/null || true)"
    [ "$current" = "$hash" ] && return 0
    choose_build_network
    build_image "$tag" "$ctx" "$version" "$args" "$hash"
}

main() {
    "$LAB_DIR/engine.sh"
    mkdir -p "$LAB_RUN_DIR"
    local suite spec
    for suite in "${SUITES[@]}"; do ensure_base "$suite"; done
    for spec in "${IMAGES[@]}"; do ensure_image "$spec"; done
    if [ "$REBUILT" = 1 ]; then
        # Drop superseded lab images (untagged by the rebuild); others are untouched.
        docker image prune -f --filter "label=$HASH_LABEL" >/dev/null
    fi
}

main "$@"
