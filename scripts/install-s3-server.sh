#!/usr/bin/env bash
# Installs the S3 servers the tests run, unless they are already there. Idempotent and quiet.
#  - s3s-fs (tests/s3.rs, the S3 part of tests/backend_conformance.rs): on PATH, in Cargo's bin
#    directory, or named by HYDRABACKUP_S3_SERVER; else `cargo install`.
#  - moto's moto_server (tests/objlock.rs: S3 Object Lock, which s3s-fs does not implement): on
#    PATH, in ~/.local/bin, or named by HYDRABACKUP_MOTO_SERVER; else into a Python virtual
#    environment under ~/.local/share/hydrabackup-moto, linked from ~/.local/bin.
set -euo pipefail
# 0.14.1 is the newest release that builds with Rust < 1.96.
S3S_FS_VERSION=0.14.1
MOTO_VERSION=5.2.1

install_s3s_fs() {
  if [ -n "${HYDRABACKUP_S3_SERVER:-}" ] && [ -x "$HYDRABACKUP_S3_SERVER" ]; then
    return
  fi
  if command -v s3s-fs >/dev/null || [ -x "${CARGO_HOME:-$HOME/.cargo}/bin/s3s-fs" ]; then
    return
  fi
  echo "installing s3s-fs $S3S_FS_VERSION (the S3 server the tests use): built once, about 8 minutes
on 2 cores; cargo shows its progress below" >&2
  # A debug build without debug info: half the compile time of a release build, and the tests
  # run as fast against it. Its own target directory: CARGO_TARGET_DIR is for the project.
  env -u CARGO_TARGET_DIR CARGO_PROFILE_DEV_DEBUG=0 cargo install s3s-fs \
    --version "$S3S_FS_VERSION" --locked --features binary --debug
}

install_moto() {
  if [ -n "${HYDRABACKUP_MOTO_SERVER:-}" ] && [ -x "$HYDRABACKUP_MOTO_SERVER" ]; then
    return
  fi
  if command -v moto_server >/dev/null || [ -x "$HOME/.local/bin/moto_server" ]; then
    return
  fi
  echo "installing moto[server] $MOTO_VERSION (the S3 Object Lock server of the tests; once, about 2 minutes)" >&2
  local venv="$HOME/.local/share/hydrabackup-moto"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "moto[server]==$MOTO_VERSION"
  mkdir -p "$HOME/.local/bin"
  ln -sf "$venv/bin/moto_server" "$HOME/.local/bin/moto_server"
}

install_s3s_fs
install_moto
