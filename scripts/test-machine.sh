#!/usr/bin/env bash
# Prints the root of a Debian 12 tree that boots under systemd-nspawn, for the package tests
# (tests/tests/package.rs), making it first if needed: debootstrap (minbase) with systemd, the
# package's dependencies and SoftHSM. Made once per package list, under target/ (about 35 s);
# the tests boot it with --volatile=overlay, so it stays as made.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=systemd,systemd-sysv,dbus,adduser,procps,softhsm2,libtss2-esys-3.0.2-0,libtss2-mu0,libtss2-tctildr0,libtss2-tcti-swtpm0,swtpm,curl,fonts-ipaexfont-gothic
root="target/test-machine/bookworm-$(printf '%s' "$packages" | sha256sum | cut -c1-12)"
if [ ! -e "$root/.complete" ]; then
  # The machine's own Debian mirror (deb822 sources first, then the classic list).
  mirror=$(sed -n 's/^URIs: *\([^ ]*\).*/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | grep -v security | head -1 || true)
  if [ -z "$mirror" ]; then
    mirror=$(awk '$1 == "deb" && $3 == "bookworm" { print $2; exit }' /etc/apt/sources.list 2>/dev/null || true)
  fi
  rm -rf "$root"
  mkdir -p "$(dirname "$root")"
  debootstrap --variant=minbase --include="$packages" bookworm "$root" "${mirror:-http://deb.debian.org/debian}" >"$root.log" 2>&1 \
    || { tail -20 "$root.log" >&2; exit 1; }
  touch "$root/.complete"
fi
realpath "$root"
