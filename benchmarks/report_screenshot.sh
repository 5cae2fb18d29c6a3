#!/usr/bin/env bash
# A headless-browser screenshot of a `vireid report` page, to check it as a person sees it.
#
#   bash benchmarks/report_screenshot.sh REPORT.html OUT.png [WIDTHxHEIGHT]
#
# Needs Debian's chromium (`apt-get install -y chromium`). The page is self-contained, so the
# browser loads it from the file with every network feature off. The window height is the part of
# the page captured (default 1280x2000, the top of the page).
set -euo pipefail

if [ $# -lt 2 ]; then
  echo "usage: $0 REPORT.html OUT.png [WIDTHxHEIGHT]" >&2
  exit 2
fi
report=$(realpath "$1")
out=$(realpath -m "$2")
size=${3:-1280x2000}
browser=$(command -v chromium || command -v chromium-browser || true)
if [ -z "$browser" ]; then
  echo "$0: chromium not found; install it with: apt-get install -y chromium" >&2
  exit 2
fi
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
mkdir -p "$(dirname "$out")"
"$browser" --headless --no-sandbox --disable-gpu --disable-quic --disable-background-networking \
  --disable-component-update --disable-sync --no-first-run --hide-scrollbars \
  --user-data-dir="$profile" --window-size="${size/x/,}" --screenshot="$out" "file://$report" \
  >"$profile/chromium.log" 2>&1 || { cat "$profile/chromium.log" >&2; exit 1; }
echo "$out"
