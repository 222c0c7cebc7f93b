#!/usr/bin/env bash
# The whole test suite: unit, property and integration tests (the README's test command).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --all-targets "$@"
