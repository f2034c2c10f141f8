#!/usr/bin/env bash
# Install the headless browser the console's browser tests drive (tests/console): Debian's chromium.
# Playwright's own browser downloads are not used; the tests point Playwright at /usr/bin/chromium.
# Does nothing when chromium is already there. Needs root (or sudo) for apt-get.
set -euo pipefail
browser="${AINS_TEST_CHROMIUM:-/usr/bin/chromium}"
if [ -x "$browser" ]; then
  exit 0
fi
sudo=""
if [ "$(id -u)" != "0" ]; then
  sudo="sudo"
fi
echo "installing chromium for the console's browser tests"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
"$browser" --version
