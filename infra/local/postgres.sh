#!/usr/bin/env bash
# A throwaway PostgreSQL for development and the tests: initdb into DIR, then serve it on
# 127.0.0.1:PORT in the foreground (trust authentication, user postgres) until stopped.
#   infra/local/postgres.sh DIR [PORT]      then: postgresql+psycopg://postgres@127.0.0.1:PORT/postgres
# Run as root, the server runs as the postgres user (PostgreSQL refuses to run as root): DIR and
# its parents must then be reachable by that user (a folder made by mktemp -d under /tmp is).
set -euo pipefail
data_parent=${1:?usage: postgres.sh DIR [PORT]}
port=${2:-5433}

bindir=$(pg_config --bindir 2>/dev/null || true)
if [ ! -x "$bindir/initdb" ]; then
  bindir=$(dirname "$(ls -d /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -n 1)")
fi
if [ ! -x "$bindir/initdb" ]; then
  echo "postgres.sh: initdb not found; install PostgreSQL (Debian: apt-get install postgresql)" >&2
  exit 3
fi

as_postgres=()
if [ "$(id -u)" = 0 ]; then
  as_postgres=(runuser -u postgres --)
  chmod 777 "$data_parent"
fi
data="$data_parent/pgdata"
if [ ! -s "$data/PG_VERSION" ]; then
  "${as_postgres[@]}" "$bindir/initdb" -D "$data" -A trust -U postgres >/dev/null
fi
exec "${as_postgres[@]}" "$bindir/postgres" -D "$data" -p "$port" -h 127.0.0.1 -k "$data_parent"
