#!/usr/bin/env bash
# The whole test suite: unit, property and integration tests (the README's test command).
# On a fresh Debian/Ubuntu machine (as root) it first installs what the build and the tests
# need; elsewhere it names what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v cc >/dev/null || missing+=(build-essential)
command -v pkg-config >/dev/null || missing+=(pkg-config)          # ssh2 builds libssh2 ...
dpkg -s libssl-dev >/dev/null 2>&1 || missing+=(libssl-dev)         # ... against OpenSSL
command -v openssl >/dev/null || missing+=(openssl)                 # REST tests: certificates
[ -x /usr/sbin/sshd ] || missing+=(openssh-server)                  # SFTP tests: a real sshd
command -v ssh-keygen >/dev/null || missing+=(openssh-client)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >/dev/null
  else
    echo "scripts/test.sh: the build and tests need: ${missing[*]} (install them, then run again)" >&2
    exit 1
  fi
fi

# tests/s3.rs runs a real S3-compatible server (s3s-fs, built once with cargo install).
bash scripts/install-s3-server.sh

cargo test --all-targets "$@"
