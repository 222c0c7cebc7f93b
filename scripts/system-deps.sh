#!/usr/bin/env bash
# Installs the system packages hydrabackup needs when they are missing (Debian/Ubuntu, as
# root); elsewhere names what is missing and fails. Idempotent and quiet.
#
#   scripts/system-deps.sh build     to build (a C compiler; OpenSSL headers for libssh2)
#   scripts/system-deps.sh test      to build and run the tests (also openssl, a real sshd)
set -euo pipefail
what=${1:-build}

missing=()
command -v cc >/dev/null || missing+=(build-essential)
command -v pkg-config >/dev/null || missing+=(pkg-config)            # ssh2 builds libssh2 ...
dpkg -s libssl-dev >/dev/null 2>&1 || missing+=(libssl-dev)           # ... against OpenSSL
if [ "$what" = test ]; then
  command -v openssl >/dev/null || missing+=(openssl)                 # REST tests: certificates
  [ -x /usr/sbin/sshd ] || missing+=(openssh-server)                  # SFTP tests: a real sshd
  command -v ssh-keygen >/dev/null || missing+=(openssh-client)
  # Object lock tests: moto's S3 server, installed into a virtual environment.
  command -v python3 >/dev/null || missing+=(python3)
  python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
fi
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >/dev/null
else
  echo "hydrabackup needs these packages: ${missing[*]} (install them, then run again)" >&2
  exit 1
fi
