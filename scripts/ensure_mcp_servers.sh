#!/usr/bin/env bash
# Installs the npm packages the tests run (pinned) into .make/node, once: the MCP filesystem server,
# and oidc-provider (tests/support/oidc runs it as the sign-in tests' OpenID Connect provider).
# Idempotent: a second run with the same pins does nothing. Needs Node.js 20+ and npm from the machine
# (Debian's `nodejs`).
set -euo pipefail

cd "$(dirname "$0")/.."
PREFIX=.make/node
# Pinned: the tests assert on this server's tool names and annotations, and on the provider's pages.
# oidc-provider: the newest 8.x, because 9.x supports only Node 22 LTS or later (it says so on every
# start) and this machine has Node 20; 8.x supports Node 18 LTS and later.
PACKAGES=("@modelcontextprotocol/server-filesystem@2026.8.31" "oidc-provider@8.8.1")
STAMP="$PREFIX/.installed-$(printf '%s\n' "${PACKAGES[@]}" | cksum | cut -d' ' -f1)"

if [[ -f "$STAMP" && -x "$PREFIX/node_modules/.bin/mcp-server-filesystem" \
      && -f "$PREFIX/node_modules/oidc-provider/package.json" ]]; then
    exit 0
fi
if ! command -v npm >/dev/null 2>&1; then
    echo "ensure_mcp_servers: npm not found; install Node.js 20 (apt-get install nodejs npm)" >&2
    exit 1
fi
mkdir -p "$PREFIX"
# A package.json of our own keeps npm from walking up and installing into some parent project.
[[ -f "$PREFIX/package.json" ]] || echo '{"name": "sidekick-mcp-servers", "private": true}' > "$PREFIX/package.json"
npm install --prefix "$PREFIX" --no-audit --no-fund --save-exact "${PACKAGES[@]}" >&2
rm -f "$PREFIX"/.installed-*
touch "$STAMP"
