#!/usr/bin/env bash
# Entry point compatible with the official postgres image's basic contract:
# POSTGRES_PASSWORD (required), POSTGRES_USER (default postgres), POSTGRES_DB (default
# the user), each also as *_FILE; PGDATA, first-start initdb,
# /docker-entrypoint-initdb.d/*.sql|*.sh, and extra "-c key=value" arguments passed
# through to postgres, which becomes PID 1.
set -euo pipefail

say() { printf 'entrypoint: %s\n' "$*" >&2; }

# VAR_FILE names a file that holds VAR (Docker secrets), as in the official image. Read as
# root, before the switch to the postgres user, which may not be able to read the file.
file_env() {
    local var="$1" file_var="${1}_FILE"
    if [ -n "${!file_var:-}" ]; then
        if [ -n "${!var:-}" ]; then
            say "error: both $var and $file_var are set"
            exit 1
        fi
        export "$var"="$(<"${!file_var}")"
        unset "$file_var"
    fi
}
file_env POSTGRES_PASSWORD
file_env POSTGRES_USER
file_env POSTGRES_DB

POSTGRES_USER="${POSTGRES_USER:-postgres}"
POSTGRES_DB="${POSTGRES_DB:-$POSTGRES_USER}"
export POSTGRES_USER POSTGRES_DB

prepare_dirs_as_root() {
    mkdir -p "$PGDATA" /var/run/postgresql
    if [ "$(stat -c %u "$PGDATA")" != "$(id -u postgres)" ]; then
        chown -R postgres:postgres "$PGDATA"
    fi
    chmod 700 "$PGDATA"
    chown postgres:postgres /var/run/postgresql
    chmod 2777 /var/run/postgresql
}

run_init_scripts() {
    local f
    for f in /docker-entrypoint-initdb.d/*; do
        case "$f" in
            *.sh) say "running $f"; bash "$f" ;;
            *.sql) say "running $f"; psql -v ON_ERROR_STOP=1 -q -U "$POSTGRES_USER" -d "$POSTGRES_DB" -f "$f" ;;
            *) ;;
        esac
    done
}

init_cluster() {
    if [ -z "${POSTGRES_PASSWORD:-}" ]; then
        say "error: database is uninitialized and POSTGRES_PASSWORD is not set"
        exit 1
    fi
    say "initializing database in $PGDATA"
    local pwfile
    pwfile="$(mktemp)"
    printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
    initdb -D "$PGDATA" --username="$POSTGRES_USER" --pwfile="$pwfile" \
        --auth-local=trust --auth-host=scram-sha-256 \
        --encoding=UTF8 --locale=C.UTF-8 >/dev/null
    rm -f "$pwfile"
    printf "\nlisten_addresses = '*'\n" >>"$PGDATA/postgresql.conf"
    printf '\nhost all all all scram-sha-256\n' >>"$PGDATA/pg_hba.conf"

    pg_ctl -D "$PGDATA" -w -s -o "-c listen_addresses='' -p ${PGPORT:-5432}" start
    if [ "$POSTGRES_DB" != "postgres" ]; then
        psql -v ON_ERROR_STOP=1 -q -U "$POSTGRES_USER" -d postgres --set db="$POSTGRES_DB" \
            <<<'CREATE DATABASE :"db";'
    fi
    run_init_scripts
    pg_ctl -D "$PGDATA" -w -s -m fast stop
    say "initialization complete"
}

main() {
    if [ "$#" -eq 0 ] || [ "${1:0:1}" = "-" ]; then
        set -- postgres "$@"
    fi
    if [ "$1" != "postgres" ]; then
        exec "$@"
    fi
    if [ "$(id -u)" = "0" ]; then
        prepare_dirs_as_root
        export HOME=/var/lib/postgresql
        exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
    fi
    if [ ! -s "$PGDATA/PG_VERSION" ]; then
        init_cluster
    fi
    exec "$@"
}

main "$@"
