#!/usr/bin/env bash
# Installs Debian's nginx for the replica tests (the load balancer in front of two dashboards), once.
# Idempotent; exits 0 either way: without nginx only those tests cannot run, and they say why.
set -u
command -v nginx >/dev/null 2>&1 && exit 0
[ -x /usr/sbin/nginx ] && exit 0
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "Installing Debian's nginx package (the replica tests' load balancer) with apt-get…"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq nginx-light >/dev/null 2>&1 || apt-get install -y -qq nginx >/dev/null 2>&1 ||
    { apt-get update -qq >/dev/null && apt-get install -y -qq nginx >/dev/null; } || true
  # The package starts a default server on port 80; the tests run their own, on free ports.
  if command -v systemctl >/dev/null 2>&1; then systemctl stop nginx >/dev/null 2>&1 || true; fi
  if [ -f /run/nginx.pid ]; then kill "$(cat /run/nginx.pid)" 2>/dev/null || true; fi
  [ -x /usr/sbin/nginx ] && exit 0
fi
echo "nginx is not installed, so the replica tests cannot run: install it (apt-get install nginx)." >&2
exit 0
