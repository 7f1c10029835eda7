#!/usr/bin/env bash
# Installs the Debian packages MyNumber Locker needs to build and test (idempotently: dpkg is
# asked first, so a second run installs nothing). Build: gcc, pkg-config, libtss2-dev (the TPM
# backend links libtss2). Tests: softhsm2 and opensc (PKCS#11), swtpm, swtpm-tools, tpm2-tools,
# python3 and python3-venv (the Python grpcio client tests; scripts/python-env.sh), systemd
# (systemd-analyze checks the hardening of deploy/mynumber-locker.service); the package tests:
# dpkg-dev (dpkg-shlibdeps for the package's dependencies), debootstrap and systemd-container
# (a Debian 12 booted under systemd-nspawn), cargo-deb (the package itself, from crates.io);
# e2fsprogs and util-linux (mkfs.ext4, mount, fsfreeze: the frozen-disk test's loop-mounted disk).
set -euo pipefail

packages=(gcc libc6-dev pkg-config ca-certificates curl libtss2-dev softhsm2 opensc swtpm swtpm-tools tpm2-tools python3 python3-venv systemd p7zip-full poppler-utils fonts-ipaexfont-gothic fonts-ipaexfont-mincho postgresql-15 dpkg-dev debootstrap systemd-container chromium chromium-driver e2fsprogs util-linux)
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing packages: ${missing[*]} (run as root, or install them)" >&2
    exit 1
  fi
  echo "installing: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi

# cargo-deb builds the Debian package (tests/tests/package.rs installs it in a booted Debian 12).
# Pinned: its manifest keys are what vault-daemon/Cargo.toml's [package.metadata.deb] uses.
CARGO_DEB_VERSION=3.8.0
if [ "$(cargo deb --version 2>/dev/null)" != "cargo-deb $CARGO_DEB_VERSION" ]; then
  echo "installing cargo-deb $CARGO_DEB_VERSION"
  cargo install cargo-deb --locked --version "$CARGO_DEB_VERSION" --quiet
fi
