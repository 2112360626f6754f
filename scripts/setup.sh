#!/usr/bin/env bash
# Set up everything vimaged needs on a fresh Debian machine: system packages (when root) and a
# virtual environment in .venv with the project and its test tools. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    need=""
    command -v mandoc >/dev/null || need="$need mandoc"
    command -v shellcheck >/dev/null || need="$need shellcheck"
    command -v ip >/dev/null || need="$need iproute2"
    command -v ping >/dev/null || need="$need iputils-ping"
    # vimaged-cni's tests: a libcni driver (Go, offline GOPATH build) and the host-local IPAM
    command -v go >/dev/null || need="$need golang-go"
    [ -d /usr/share/gocode/src/github.com/containernetworking/cni/libcni ] ||
        need="$need golang-github-appc-cni-dev"
    [ -x /usr/lib/cni/host-local ] || need="$need containernetworking-plugins"
    # the compiled vimaged-cni client: its unit tests compile it (and fail without a compiler)
    command -v gcc >/dev/null || need="$need gcc"
    dpkg -s libc6-dev >/dev/null 2>&1 || need="$need libc6-dev"
    # its containerd end-to-end test: ctr run --cni --rootfs with a static busybox rootfs
    command -v containerd >/dev/null || need="$need containerd"
    command -v runc >/dev/null || need="$need runc"
    dpkg -s busybox-static >/dev/null 2>&1 || need="$need busybox-static"
    if [ -n "$need" ]; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        # shellcheck disable=SC2086 # word splitting of the package list is intended
        apt-get install -y -qq $need >/dev/null
    fi
fi

python3 -m venv .venv
# compat mode: a plain .pth entry, no import hook that would slow every Python start
.venv/bin/pip install -q --disable-pip-version-check --config-settings editable_mode=compat -e '.[test]'
