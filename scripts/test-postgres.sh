# PostgreSQL for the tests; sourced by scripts/test.sh, not run by itself.
#
# `use_test_postgres` exports GANTRY_TEST_DATABASE_URL, the server the tests create their
# databases on (each test makes its own `gantry_test_<random>` and drops it):
# - already set: kept as it is;
# - a server on 127.0.0.1:5432 that lets `postgres` in without a password: that one;
# - otherwise a throwaway server (initdb + pg_ctl in a temporary directory, on a free port),
#   stopped and deleted when the calling script exits.
# Quiet unless it has to start a server.

# Whether `postgres` gets in on 127.0.0.1:5432 without a password. Without psql, a server
# answering on the port is taken at its word; the tests say so clearly if it was wrong.
local_postgres_answers() {
  (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null || return 1
  if command -v psql >/dev/null 2>&1; then
    PGCONNECT_TIMEOUT=5 psql -w -h 127.0.0.1 -p 5432 -U postgres -d postgres -Atqc 'SELECT 1' >/dev/null 2>&1
  fi
}

# The directory of the PostgreSQL server programs (initdb, pg_ctl), newest version first.
postgres_bindir() {
  local initdb
  initdb=$(command -v initdb 2>/dev/null || true)
  if [[ -z $initdb ]]; then
    initdb=$(compgen -G '/usr/lib/postgresql/*/bin/initdb' | sort -V | tail -n 1 || true)
  fi
  [[ -n $initdb ]] || return 1
  dirname "$(readlink -f "$initdb")"
}

start_throwaway_postgres() {
  local bindir dir port user
  local -a as_user=()
  if ! bindir=$(postgres_bindir); then
    echo "no PostgreSQL answers on 127.0.0.1:5432 and initdb is not installed (Debian: apt-get install postgresql)" >&2
    return 1
  fi
  dir=$(mktemp -d "${TMPDIR:-/tmp}/gantry-test-postgres.XXXXXX")
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  if [[ $(id -u) -eq 0 ]]; then
    # initdb refuses to run as root.
    user=postgres
    id "$user" >/dev/null 2>&1 || user=nobody
    chown "$user" "$dir"
    as_user=(runuser -u "$user" --)
  fi
  if ! "${as_user[@]}" "$bindir/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --no-sync >"$dir/initdb.log" 2>&1; then
    cat "$dir/initdb.log" >&2
    return 1
  fi
  if ! "${as_user[@]}" "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -s \
    -o "-h 127.0.0.1 -p $port -k $dir -c fsync=off -c max_connections=300" start; then
    cat "$dir/server.log" >&2
    return 1
  fi
  THROWAWAY_POSTGRES=("${as_user[@]}" "$bindir/pg_ctl" -D "$dir/data" -m immediate -s stop)
  THROWAWAY_POSTGRES_DIR=$dir
  trap stop_throwaway_postgres EXIT
  export GANTRY_TEST_DATABASE_URL="postgres://postgres@127.0.0.1:$port/postgres"
  echo "no PostgreSQL on 127.0.0.1:5432: started a throwaway server on port $port for the tests" >&2
}

stop_throwaway_postgres() {
  "${THROWAWAY_POSTGRES[@]}" >/dev/null 2>&1 || true
  rm -rf "$THROWAWAY_POSTGRES_DIR"
}

use_test_postgres() {
  if [[ -n ${GANTRY_TEST_DATABASE_URL:-} ]]; then
    return 0
  fi
  if local_postgres_answers; then
    export GANTRY_TEST_DATABASE_URL="postgres://postgres@127.0.0.1:5432/postgres"
    return 0
  fi
  start_throwaway_postgres
}
