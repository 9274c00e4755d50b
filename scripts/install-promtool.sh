#!/usr/bin/env bash
# promtool checks and unit-tests the alert rules. Debian's prometheus package ships it.
set -euo pipefail
command -v promtool >/dev/null 2>&1 && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing promtool (Debian package prometheus)..."
  (apt-get install -y -q --no-install-recommends prometheus >/dev/null 2>&1 ||
   (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q --no-install-recommends prometheus >/dev/null 2>&1)) ||
   echo "warning: could not install promtool; the alert-rule tests will be skipped" >&2
else
  echo "warning: promtool not found and cannot apt-get install it; alert-rule tests will be skipped" >&2
fi
exit 0
