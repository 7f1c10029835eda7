#!/usr/bin/env bash
# Runs every test of MyNumber Locker: unit tests and the end-to-end suites against real daemon
# processes on loopback ports. Works on a fresh Debian 12 machine as root: installs the system
# packages it needs (idempotently) first. Never skips a suite because a tool is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

# The packages the build and the tests need (idempotent).
./scripts/install-deps.sh

# The hardware-backend suites need these tools; here a missing one is a failure, never a skip.
for tool in softhsm2-util pkcs11-tool swtpm swtpm_ioctl; do
  command -v "$tool" >/dev/null || { echo "required tool $tool is missing" >&2; exit 1; }
done

# libtss2 logs every TPM error response to stderr; the tests provoke some on purpose.
export TSS2_LOG=all+NONE

# The Python grpcio client tests run with this interpreter (a venv with grpcio, made once).
VAULT_TEST_PYTHON=$(./scripts/python-env.sh)
export VAULT_TEST_PYTHON

# Runs the end-to-end tests of the named areas (modules of the one test binary, e2e), exactly
# those: a libtest filter matches anywhere in a name (`tamper::` would pick `live_tamper::`
# too), so the names are listed and passed with --exact. An area with no test is an error.
run_areas() {
  local names area
  names=$(cargo test -p vault-tests --test e2e --locked -q -- --list --format terse 2>/dev/null \
    | sed -n 's/: test$//p')
  local selected=()
  for area in "$@"; do
    local found
    found=$(grep -E "^${area}::" <<<"$names" || true)
    [ -n "$found" ] || { echo "no end-to-end tests in area $area" >&2; exit 1; }
    mapfile -t -O "${#selected[@]}" selected <<<"$found"
  done
  cargo test -p vault-tests --test e2e --locked -- --exact "${selected[@]}" \
    --test-threads "${AREA_THREADS:-${TEST_THREADS:-4}}"
}

# Areas that boot a Debian machine or time a daemon under load run on their own after the rest:
# in one test binary they would otherwise share the two cores with whatever runs beside them,
# and a boot timeout or a call deadline measured there would be the neighbours' doing.
SOLO_AREAS=(package deploy stall durability)
solo_skips=()
for area in "${SOLO_AREAS[@]}"; do solo_skips+=(--skip "${area}::"); done

# The end-to-end suites start the real binaries, so build them before the tests run.
cargo build --workspace --bins --locked
# Everything, with the simulated token as the dev backend: the solo areas alone, after the rest.
cargo test --workspace --locked -- "${solo_skips[@]}" --test-threads "${TEST_THREADS:-4}"
AREA_THREADS=1 run_areas "${SOLO_AREAS[@]}"
# A daemon built with one key backend refuses a config naming another, by its feature.
cargo test -p vault-daemon --locked --no-default-features --features pkcs11 --lib \
  config::tests::a_backend_this_build_lacks_is_refused_by_its_feature
# The core areas again, against each hardware backend.
for backend in softhsm tpm; do
  echo "== end-to-end suites on the $backend backend"
  VAULT_TEST_BACKEND=$backend run_areas records tamper untrusted_store dual_control leaks cli \
    authorization audit_offline rotation destruction suspension lifecycle corrections reports
done
# The core areas once more, their dev daemons on the PostgreSQL store (a throwaway server;
# each daemon's data directory gets its own database). The areas that edit or copy the embedded
# store's file are redb's own; the cluster areas (cluster, live_tamper) and the store
# conformance suite ran above.
echo "== end-to-end suites on the PostgreSQL store"
pg_root=$(mktemp -d /tmp/locker-pg.XXXXXX)
VAULT_TEST_PG_URL=$(./scripts/test-postgres.sh start "$pg_root")
trap './scripts/test-postgres.sh stop "$pg_root"' EXIT
VAULT_TEST_STORE=postgres VAULT_TEST_PG_URL=$VAULT_TEST_PG_URL run_areas records dual_control cli \
  authorization audit_offline rotation suspension corrections reports batch record_purposes \
  error_details abuse_limits
