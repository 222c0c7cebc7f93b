#!/usr/bin/env bash
# The whole test suite: unit, property and integration tests (the README's test command).
set -euo pipefail
cd "$(dirname "$0")/.."
# tests/s3.rs needs a real S3-compatible server.
bash scripts/install-s3-server.sh
cargo test --all-targets "$@"
