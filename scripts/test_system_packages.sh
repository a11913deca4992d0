#!/usr/bin/env bash
# Debian packages the test suite needs besides .venv: chromium (+ an emoji font, for screenshots) and
# nginx-light. Installed with apt-get when missing, as root or through passwordless sudo; otherwise
# the command to run is printed and the tests that need them say what is missing.
set -uo pipefail
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium fonts-noto-color-emoji)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
[ ${#missing[@]} = 0 ] && exit 0
if [ "$(id -u)" = 0 ]; then
  as_root=()
elif sudo -n true 2>/dev/null; then
  as_root=(sudo -n)
else
  echo "Not installed (needs root): ${missing[*]}. Run: sudo apt-get install -y ${missing[*]}" >&2
  exit 0
fi
if ! { "${as_root[@]}" apt-get update -qq && "${as_root[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null; }; then
  echo "apt-get could not install ${missing[*]}; the tests that need them will say so" >&2
fi
exit 0
