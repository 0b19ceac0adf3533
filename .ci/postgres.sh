#!/usr/bin/env bash
# Start Debian's PostgreSQL on loopback (if it is not running), create a throw-away role
# (LOGIN, CREATEDB, a random password; see below) and a fresh database of the same name, and
# print the SQLAlchemy URL on stdout.
# Usage: MLPIPELINE_TEST_POSTGRES_URL=$(bash .ci/postgres.sh)          # role and database mlpipeline_test
#        MLPIPELINE_STACK_POSTGRES_URL=$(bash .ci/postgres.sh mlpipeline_stack)   # for `make stack`
set -euo pipefail

role="${1:-mlpipeline_test}"
if ! [[ "${role}" =~ ^[a-z_][a-z0-9_]{0,62}$ ]]; then
    echo "invalid role name: ${role}" >&2
    exit 2
fi

version=$(pg_lsclusters --no-header 2>/dev/null | awk 'NR==1 {print $1}')
if [ -z "${version}" ]; then
    version=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
    pg_createcluster "${version}" main >&2
fi
port=$(pg_lsclusters --no-header | awk -v v="${version}" '$1 == v && $2 == "main" {print $3}')
status=$(pg_lsclusters --no-header | awk -v v="${version}" '$1 == v && $2 == "main" {print $4}')
if [ "${status}" != "online" ]; then
    pg_ctlcluster --skip-systemctl-redirect "${version}" main start >&2
fi
for _ in $(seq 1 30); do
    if runuser -u postgres -- pg_isready -q -p "${port}"; then break; fi
    sleep 1
done
runuser -u postgres -- pg_isready -p "${port}" >&2

# A random password made on this machine, kept only in a root-only file under /run (never in
# the repository; gone at reboot). It is reused while that file exists, so another run (a second
# checkout's CI, `make stack`) does not lock out a test session still using the role.
secret_file="/run/mlpipeline-postgres/${role}.password"
(umask 077 && mkdir -p "$(dirname "${secret_file}")")
if [ -s "${secret_file}" ]; then
    password=$(cat "${secret_file}")
else
    password=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
    (umask 077 && printf '%s\n' "${password}" > "${secret_file}")
fi
psql_admin() { runuser -u postgres -- psql -v ON_ERROR_STOP=1 -q -p "${port}" "$@"; }
if [ "$(psql_admin -tAc "SELECT 1 FROM pg_roles WHERE rolname = '${role}'")" = "1" ]; then
    psql_admin -c "ALTER ROLE ${role} WITH LOGIN CREATEDB PASSWORD '${password}'" >&2
else
    psql_admin -c "CREATE ROLE ${role} WITH LOGIN CREATEDB PASSWORD '${password}'" >&2
fi
for db in "${role}"; do
    psql_admin -c "DROP DATABASE IF EXISTS ${db} WITH (FORCE)" >&2
    psql_admin -c "CREATE DATABASE ${db} OWNER ${role}" >&2
done
echo "postgresql+psycopg2://${role}:${password}@127.0.0.1:${port}/${role}"
