#!/usr/bin/env bash
# Builds the release binary and installs it with shell completions and man pages.
#
#   scripts/install.sh                     # into /usr/local
#   PREFIX=$HOME/.local scripts/install.sh
#   DESTDIR=/tmp/pkg PREFIX=/usr scripts/install.sh   # staged, for packaging
#
# Installs $PREFIX/bin/hydrabackup, completions for bash, zsh and fish under $PREFIX/share, and
# one man page per command in $PREFIX/share/man/man1. Set HYDRABACKUP_BIN to install an
# already built binary instead of building one.
set -euo pipefail
cd "$(dirname "$0")/.."

prefix=${PREFIX:-/usr/local}
root=${DESTDIR:-}$prefix

if [ -n "${HYDRABACKUP_BIN:-}" ]; then
  bin=$HYDRABACKUP_BIN
else
  echo "== building (release; the first build takes several minutes)"
  bash scripts/system-deps.sh build
  cargo build --release --bin hydrabackup
  bin=${CARGO_TARGET_DIR:-target}/release/hydrabackup
fi

echo "== installing into $root"
install -d "$root/bin" "$root/share/man/man1" \
  "$root/share/bash-completion/completions" \
  "$root/share/zsh/site-functions" \
  "$root/share/fish/vendor_completions.d"
install -m 0755 "$bin" "$root/bin/hydrabackup"
"$bin" completion bash > "$root/share/bash-completion/completions/hydrabackup"
"$bin" completion zsh > "$root/share/zsh/site-functions/_hydrabackup"
"$bin" completion fish > "$root/share/fish/vendor_completions.d/hydrabackup.fish"
"$bin" man "$root/share/man/man1" -q
echo "installed $root/bin/hydrabackup, completions and $(ls "$root/share/man/man1" | wc -l) man pages"
