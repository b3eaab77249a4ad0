#!/usr/bin/env bash
# Debian's Chromium for the dashboard's browser test (Playwright drives it via
# executable_path; no browser download). Does nothing when already present.
# A system package: .ci/run calls this before the test command; a user runs it
# once by hand (it needs root or sudo). scripts/test.sh itself installs nothing.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
    exit 0
fi
echo "[setup] installing Debian chromium"
SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
