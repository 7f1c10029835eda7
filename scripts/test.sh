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

# The end-to-end suites start the real binaries, so build them before the tests run.
cargo build --workspace --bins --locked
# Everything, with the simulated token as the dev backend.
cargo test --workspace --locked -- --test-threads "${TEST_THREADS:-4}"
# A daemon built with one key backend refuses a config naming another, by its feature.
cargo test -p vault-daemon --locked --no-default-features --features pkcs11 --lib \
  config::tests::a_backend_this_build_lacks_is_refused_by_its_feature
# The end-to-end suites of the core again, against each hardware backend.
for backend in softhsm tpm; do
  echo "== end-to-end suites on the $backend backend"
  VAULT_TEST_BACKEND=$backend cargo test -p vault-tests --locked \
    --test records --test tamper --test untrusted_store --test dual_control --test leaks --test cli --test authorization --test audit_offline --test rotation --test destruction --test suspension --test lifecycle --test corrections --test reports -- --test-threads "${TEST_THREADS:-4}"
done
# The end-to-end suites of the core once more, their dev daemons on the PostgreSQL store (a
# throwaway server; each daemon's data directory gets its own database). The suites that edit
# or copy the embedded store's file are redb's own; the cluster suites (tests/tests/cluster.rs)
# and the store conformance suite ran above.
echo "== end-to-end suites on the PostgreSQL store"
pg_root=$(mktemp -d /tmp/locker-pg.XXXXXX)
VAULT_TEST_PG_URL=$(./scripts/test-postgres.sh start "$pg_root")
trap './scripts/test-postgres.sh stop "$pg_root"' EXIT
VAULT_TEST_STORE=postgres VAULT_TEST_PG_URL=$VAULT_TEST_PG_URL cargo test -p vault-tests --locked \
  --test records --test dual_control --test cli --test authorization --test audit_offline --test rotation --test suspension --test corrections --test reports --test batch --test record_purposes --test error_details --test abuse_limits -- --test-threads "${TEST_THREADS:-4}"
