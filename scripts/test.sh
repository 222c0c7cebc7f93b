#!/usr/bin/env bash
# The whole test suite: unit, property and integration tests (the README's test command).
# On a fresh Debian/Ubuntu machine (as root) it first installs what the build and the tests
# need (scripts/system-deps.sh) and the S3 server the S3 tests run.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/system-deps.sh test
# tests/s3.rs runs a real S3-compatible server (s3s-fs, built once with cargo install),
# tests/objlock.rs one with S3 Object Lock (moto, installed once with pip into a venv).
bash scripts/install-s3-server.sh

# Includes tests/backend_conformance.rs: the backend conformance suite on local, memory, REST,
# SFTP and S3.
# `cargo test` builds with the `test-hooks` feature (crash points, test hooks): Cargo.toml's
# dev-dependency on this package turns it on; release builds never have it.
cargo test --all-targets "$@"
# Tests that need root are #[ignore]d (with the reason); run them when we are root.
if [ "$(id -u)" = 0 ]; then
    cargo test --test full_disk --test sftp -- --ignored full_disk
fi
