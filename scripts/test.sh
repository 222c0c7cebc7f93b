#!/usr/bin/env bash
# The whole test suite: unit, property and integration tests (the README's test command).
# On a fresh Debian/Ubuntu machine (as root) it first installs what the build and the tests
# need (scripts/system-deps.sh) and the S3 server the S3 tests run.
set -euo pipefail
cd "$(dirname "$0")/.."

start=$SECONDS
# Each phase line says how long the run has taken so far.
phase() { echo "== [$((SECONDS - start)) s] $*" >&2; }

phase "system packages"
bash scripts/system-deps.sh test
# tests/s3.rs runs a real S3-compatible server (s3s-fs, built once with cargo install),
# tests/objlock.rs one with S3 Object Lock (moto, installed once with pip into a venv).
phase "S3 test servers"
bash scripts/install-s3-server.sh

# Includes tests/backend_conformance.rs: the backend conformance suite on local, memory, REST,
# SFTP and S3.
# `cargo test` builds with the `test-hooks` feature (crash points, test hooks): Cargo.toml's
# dev-dependency on this package turns it on; release builds never have it.
phase "building and running the tests: the first build compiles every dependency and every test
   binary (cargo shows its progress; many minutes on 2 cores), later runs rebuild only what changed"
cargo test --all-targets "$@"
# Tests that need root are #[ignore]d (with the reason); run them when we are root.
if [ "$(id -u)" = 0 ]; then
    phase "tests that need root"
    cargo test --test full_disk --test sftp -- --ignored full_disk
fi
phase "done"
