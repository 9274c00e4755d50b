#!/usr/bin/env bash
# Install promtool (it checks and unit-tests alerts/ekya-rules.yml) unless it is already there.
#
# Source: Debian's `prometheus` package. Only its promtool binary is needed (a self-contained Go program
# linked against libc alone), so the package is fetched with `apt-get download` and just /usr/bin/promtool
# is extracted: ~2 s, no Prometheus service, no system user, none of the package's 11 web-UI dependencies,
# and it works without root. It lands in /usr/local/bin when run as root, else in the project venv's bin/
# (the tests look in both). If that fails and we are root, `apt-get install prometheus` is the fallback.
# Never fails the build: without promtool the alert-rule tests skip and say why.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV_BIN="$ROOT/.venv/bin"

if command -v promtool >/dev/null 2>&1 || [ -x "$VENV_BIN/promtool" ]; then
  exit 0
fi
warn() { echo "warning: $*; the alert-rule tests will be skipped" >&2; }
if ! command -v apt-get >/dev/null 2>&1 || ! command -v dpkg-deb >/dev/null 2>&1; then
  warn "promtool not found and this is not a Debian-like system (install promtool from your distribution)"
  exit 0
fi

is_root=false
[ "$(id -u)" = 0 ] && is_root=true
if $is_root && [ -w /usr/local/bin ]; then dest=/usr/local/bin; else dest="$VENV_BIN"; fi
mkdir -p "$dest"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
fetch() { (cd "$tmp" && apt-get download -q prometheus >/dev/null 2>&1); }

echo "installing promtool into $dest (from Debian's prometheus package)..."
if ! fetch && $is_root; then
  apt-get update -q >/dev/null 2>&1 || true   # package lists missing or stale on a fresh machine
  fetch || true
fi
deb="$(ls "$tmp"/prometheus_*.deb 2>/dev/null | head -n 1 || true)"
if [ -n "$deb" ] && dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$tmp" ./usr/bin/promtool 2>/dev/null; then
  install -m 0755 "$tmp/usr/bin/promtool" "$dest/promtool"
elif $is_root; then
  apt-get install -y -q --no-install-recommends prometheus >/dev/null 2>&1 || {
    warn "could not install Debian's prometheus package"; exit 0; }
else
  warn "could not download Debian's prometheus package (no package lists? run 'apt-get update' as root)"
  exit 0
fi
if command -v promtool >/dev/null 2>&1; then promtool --version 2>&1 | head -n 1
else "$dest/promtool" --version 2>&1 | head -n 1; fi
