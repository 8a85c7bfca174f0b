# Sourced by scripts/test: starts a throwaway PostgreSQL for the tests' second pass and exports its URL as
# APPROVAL_TEST_POSTGRES_URL; the cluster is stopped and deleted when the script exits. The server listens on
# 127.0.0.1 only, on a free port, with a random password. Installs Debian's postgresql if it is missing.
# Set APPROVAL_TEST_POSTGRES_URL yourself to use a server you run (its user must be allowed to create databases).
if [[ -z "${APPROVAL_TEST_POSTGRES_URL:-}" ]]; then
  _pg_bindir() { find /usr/lib/postgresql -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -n 1; }
  PG_BIN="${PG_BIN:-$(_pg_bindir)}"
  if [[ -z "$PG_BIN" ]]; then
    if command -v apt-get >/dev/null 2>&1; then
      SUDO=()
      if [[ "$(id -u)" != 0 ]]; then SUDO=(sudo); fi
      echo "Installing postgresql with apt-get (for the tests' PostgreSQL pass)..." >&2
      "${SUDO[@]}" apt-get update -qq
      DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq postgresql >/dev/null
      PG_BIN="$(_pg_bindir)"
    else
      echo "The tests' PostgreSQL pass needs the PostgreSQL server: install it (or set PG_BIN=/its/bin) and run again." >&2
      exit 1
    fi
  fi
  # PostgreSQL refuses to run as root: then the cluster belongs to the postgres user the Debian package creates.
  PG_AS=()
  if [[ "$(id -u)" == 0 ]]; then PG_AS=(runuser -u postgres --); fi
  PG_DIR="$(mktemp -d)"
  _stop_postgres() {
    "${PG_AS[@]}" "$PG_BIN/pg_ctl" stop -D "$PG_DIR/data" -m immediate >/dev/null 2>&1 || true
    rm -rf "$PG_DIR"
  }
  trap _stop_postgres EXIT
  PG_PASSWORD="$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
  PG_PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
  printf '%s\n' "$PG_PASSWORD" >"$PG_DIR/password"
  if [[ "$(id -u)" == 0 ]]; then chown -R postgres: "$PG_DIR"; fi
  "${PG_AS[@]}" "$PG_BIN/initdb" -D "$PG_DIR/data" -U approval --pwfile="$PG_DIR/password" --auth=scram-sha-256 \
    --encoding=UTF8 --locale=C.UTF-8 --no-sync >"$PG_DIR/initdb.log" 2>&1 \
    || { cat "$PG_DIR/initdb.log" >&2; exit 1; }
  # A test cluster: durability off (every database is dropped after its test), no Unix socket, loopback only.
  "${PG_AS[@]}" "$PG_BIN/pg_ctl" start -D "$PG_DIR/data" -w -l "$PG_DIR/server.log" -o \
    "-c listen_addresses=127.0.0.1 -p $PG_PORT -c unix_socket_directories= -c max_connections=300 \
     -c fsync=off -c synchronous_commit=off -c full_page_writes=off" >/dev/null \
    || { cat "$PG_DIR/server.log" >&2; exit 1; }
  export APPROVAL_TEST_POSTGRES_URL="postgresql://approval:$PG_PASSWORD@127.0.0.1:$PG_PORT/postgres"
fi
