#!/usr/bin/env bash
# The whole test suite: unit, property and integration tests (the README's test command).
set -euo pipefail
cd "$(dirname "$0")/.."

# tests/sftp.rs runs a private OpenSSH sshd on loopback: install it on a fresh machine (Debian,
# as root); elsewhere say what is missing and let those tests fail with the same hint.
if [ ! -x /usr/sbin/sshd ] || ! command -v ssh-keygen >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends \
      openssh-server openssh-client; } >/dev/null
  else
    echo "scripts/test.sh: the SFTP tests need openssh-server and openssh-client" >&2
  fi
fi

cargo test --all-targets "$@"
