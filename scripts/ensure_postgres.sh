#!/usr/bin/env bash
# Make sure PostgreSQL's server binaries are here for the tests: install Debian's postgresql when root.
# Usage: scripts/ensure_postgres.sh
# The tests start throwaway clusters of their own (tests/support/postgres.py), so the `main`
# cluster Debian's package creates and starts is stopped and kept from starting again.
# Always exits 0: without PostgreSQL only its tests skip, saying why; Sidekick itself runs on SQLite.
set -u

have() { compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; }

have && exit 0

if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "Installing Debian's postgresql package (for the PostgreSQL store's tests) with apt-get…"
  # `apt-get update` only when the install fails, so a warm machine stays fast.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null 2>&1 ||
    { apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; } ||
    true
  if have; then
    # Debian starts a `main` cluster on port 5432: nothing of ours uses it, so it must not run.
    if command -v pg_lsclusters >/dev/null 2>&1; then
      pg_lsclusters --no-header 2>/dev/null | while read -r version name _; do
        pg_ctlcluster "$version" "$name" stop >/dev/null 2>&1 || true
        # `manual`: not started at boot or by `service postgresql start`.
        echo manual >"/etc/postgresql/$version/$name/start.conf" 2>/dev/null || true
      done
    fi
    exit 0
  fi
fi

cat >&2 <<'MSG'
PostgreSQL's server is not installed, so the PostgreSQL store's tests skip (everything else runs):
To run them:
  - Debian/Ubuntu: sudo apt-get install postgresql   (or run `make test` as root)
    then stop the cluster it starts: sudo pg_ctlcluster 15 main stop
  - The tests need /usr/lib/postgresql/*/bin/initdb; they start and stop clusters of their own.
MSG
exit 0
