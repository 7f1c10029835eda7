#!/usr/bin/env bash
# Installs the Debian packages MyNumber Locker needs to build and test (idempotently: dpkg is
# asked first, so a second run installs nothing). Build: gcc, pkg-config, libtss2-dev (the TPM
# backend links libtss2). Tests: softhsm2 and opensc (PKCS#11), swtpm, swtpm-tools, tpm2-tools,
# python3 and python3-venv (the Python grpcio client tests; scripts/python-env.sh), systemd
# (systemd-analyze checks the hardening of deploy/vault-daemon.service).
set -euo pipefail

packages=(gcc libc6-dev pkg-config ca-certificates curl libtss2-dev softhsm2 opensc swtpm swtpm-tools tpm2-tools python3 python3-venv systemd p7zip-full poppler-utils fonts-ipaexfont-gothic fonts-ipaexfont-mincho postgresql-15)
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
