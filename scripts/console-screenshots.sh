#!/usr/bin/env bash
# Refreshes the console's pictures in docs/images from the browser tests: runs the `console`
# suite (Chromium through chromedriver against a dev daemon, as the README's test command
# does), then copies the screenshots it took from target/console-screenshots/.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo test -p vault-tests --test e2e --locked -- console::
for name in requests alerts ledger certificate carry-outs; do
  cp "target/console-screenshots/$name.png" "docs/images/console-$name.png"
done
echo "docs/images/console-*.png refreshed from the browser tests"
