#!/usr/bin/env bash
# Make sure a Chromium is available to Playwright: Playwright's own build first, then the system's.
# Usage: scripts/ensure_browser.sh PYTHON
set -u
py=${1:-python3}

have() {
  "$py" -c 'import sys; from sidekick.browser.chromium import playwright_chromium, system_chromium
sys.exit(0 if (playwright_chromium() or system_chromium()) else 1)' 2>/dev/null
}

if [ -n "${SIDEKICK_BROWSER_PATH:-}" ]; then
  [ -x "$SIDEKICK_BROWSER_PATH" ] && exit 0
  echo "SIDEKICK_BROWSER_PATH=$SIDEKICK_BROWSER_PATH is not an executable file." >&2
  exit 1
fi
have && exit 0

echo "Installing Playwright's Chromium…"
if "$py" -m playwright install chromium >/tmp/sidekick-playwright-install.log 2>&1 && have; then
  exit 0
fi
echo "Playwright's browser download is not possible here (see /tmp/sidekick-playwright-install.log);"
echo "falling back to the system Chromium."

if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "Installing Debian's chromium package with apt-get…"
  # `apt-get update` only when the package is unknown, so a warm machine stays fast.
  if ! apt-cache show chromium >/dev/null 2>&1; then
    apt-get update -qq >/dev/null
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null || true
fi
have && exit 0

cat >&2 <<'MSG'
No Chromium is available, and Sidekick needs one.
Do one of these, then run the command again:
  - python -m playwright install chromium        (needs internet access)
  - sudo apt-get install chromium                (Debian/Ubuntu)
  - export SIDEKICK_BROWSER_PATH=/path/to/chromium  (any Chromium or Chrome you already have)
MSG
exit 1
