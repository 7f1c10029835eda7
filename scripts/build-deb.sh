#!/usr/bin/env bash
# Builds the Debian package mynumber-locker into target/debian/ and prints its path.
#   scripts/build-deb.sh            release binaries (cargo build --release first): to install
#   scripts/build-deb.sh --test     the debug binaries `cargo build --workspace --bins` built
#                                   (the test command does): for the package tests, which check
#                                   the package, not the optimiser
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = "--test" ]; then
  # cargo-deb warns that a dev profile is not for releases: this one is for tests only.
  cargo deb -p vault-daemon --no-build --locked --profile dev --fast \
    --output target/debian/mynumber-locker-test.deb
else
  cargo build --release --locked -p vault-daemon -p vault-client -p vault-console
  cargo deb -p vault-daemon --no-build --locked
fi
