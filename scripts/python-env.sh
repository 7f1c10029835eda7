#!/usr/bin/env bash
# The Python environment of the Python client tests and the Python guide: a venv under target/
# with what examples/python/requirements.txt and tests/python/requirements-tests.txt pin, from PyPI (idempotent: an existing venv with
# all of it is kept). Prints its python.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=target/python-venv
if ! "$venv/bin/python" -c "import grpc, grpc_tools, grpc_status, grpc_reflection, prometheus_client" 2>/dev/null; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r examples/python/requirements.txt \
    -r tests/python/requirements-tests.txt
fi
echo "$PWD/$venv/bin/python"
