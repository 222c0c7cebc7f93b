#!/usr/bin/env bash
# The whole test suite: unit, property and integration tests (the README's test command).
# Installs the system tools the tests drive when they are missing (Debian/Ubuntu, as root).
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v openssl >/dev/null || missing+=(openssl)   # certificates for the REST server tests
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "scripts/test.sh: the tests need: ${missing[*]} (install them, then run again)" >&2
    exit 1
  fi
fi

# tests/s3.rs needs a real S3-compatible server.
bash scripts/install-s3-server.sh
cargo test --all-targets "$@"
