#!/usr/bin/env bash
# The Python environment of the Python client tests: a venv under target/ with grpcio and
# grpcio-tools from PyPI (idempotent: an existing venv with both is kept). Prints its python.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=target/python-venv
if ! "$venv/bin/python" -c "import grpc, grpc_tools" 2>/dev/null; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check grpcio==1.85.1 grpcio-tools==1.85.1
fi
echo "$PWD/$venv/bin/python"
