#!/usr/bin/env bash
# Make sure the Python tool's sandbox (bubblewrap) works: install Debian's bubblewrap when root.
# Usage: scripts/ensure_sandbox.sh PYTHON
# Always exits 0: without a sandbox only the Python tool is off, and the dashboard and CLI say why.
set -u
py=${1:-python3}

# The tool's own probe: bwrap present and able to run the interpreter in every namespace it needs.
why() {
  "$py" -c 'from sidekick.tools.sandbox import SandboxUnavailable, probe
try:
    probe()
except SandboxUnavailable as exc:
    print(exc)
    raise SystemExit(1)' 2>&1
}

reason=$(why) && exit 0

if ! command -v bwrap >/dev/null 2>&1 && [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "Installing Debian's bubblewrap package (the Python tool's sandbox) with apt-get…"
  # `apt-get update` only when the install fails, so a warm machine stays fast.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap >/dev/null 2>&1 ||
    { apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap >/dev/null; } ||
    true
  reason=$(why) && exit 0
fi

cat >&2 <<MSG
The Python tool's sandbox is not available, so the Python tool stays off (everything else works):
  $reason
To enable it:
  - Debian/Ubuntu: sudo apt-get install bubblewrap   (or run \`make\` as root)
  - Fedora: sudo dnf install bubblewrap;  Arch: sudo pacman -S bubblewrap
  - bwrap also needs user, PID and network namespaces (allowed by default on most distributions;
    in a container, run it with them allowed).
Then set SIDEKICK_ENABLE_PYTHON=1.
MSG
exit 0
