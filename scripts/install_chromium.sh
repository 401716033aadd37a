#!/usr/bin/env bash
# Debian's headless Chromium (run in a network namespace by unshare, from util-linux) for `fixate-rt import-adserp` (organic result boxes) and its tests.
# Never a browser download: only the distribution's packages. A no-op when both are installed.
set -uo pipefail
if command -v chromium >/dev/null && command -v unshare >/dev/null; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if sudo -n true 2>/dev/null; then SUDO="sudo -n"; else
    echo "install_chromium: not root and no passwordless sudo; run: apt-get install chromium util-linux" >&2
    exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get install -y -qq chromium util-linux >/dev/null \
  || { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq chromium util-linux >/dev/null; }
command -v chromium >/dev/null && command -v unshare >/dev/null
