#!/usr/bin/env bash
# Installs s3s-fs, the S3-compatible server tests/s3.rs runs, unless it is already there (on
# PATH, in Cargo's bin directory, or named by HYDRABACKUP_S3_SERVER). Idempotent; silent when
# there is nothing to do.
set -euo pipefail
# 0.14.1 is the newest release that builds with Rust < 1.96.
S3S_FS_VERSION=0.14.1
if [ -n "${HYDRABACKUP_S3_SERVER:-}" ] && [ -x "$HYDRABACKUP_S3_SERVER" ]; then
  exit 0
fi
if command -v s3s-fs >/dev/null || [ -x "${CARGO_HOME:-$HOME/.cargo}/bin/s3s-fs" ]; then
  exit 0
fi
echo "installing s3s-fs $S3S_FS_VERSION (the S3 server the tests use): built once, about 8 minutes
on 2 cores; cargo shows its progress below" >&2
# A debug build without debug info: half the compile time of a release build, and the tests
# run as fast against it. Its own target directory: CARGO_TARGET_DIR is for the project.
env -u CARGO_TARGET_DIR CARGO_PROFILE_DEV_DEBUG=0 cargo install s3s-fs \
  --version "$S3S_FS_VERSION" --locked --features binary --debug
