#!/usr/bin/env bash
# The preflight's checks done by hand with the PostgreSQL client tools, as a
# baseline for BenchmarkPreflight. Needs DATABASE_URL (with sslmode and
# sslrootcert), HOST, PORT and EXPECTED_DB. Exits non-zero if a check fails.
set -euo pipefail
[ -n "${DATABASE_URL:-}" ] || { echo "DATABASE_URL is not set" >&2; exit 1; }
case "$DATABASE_URL" in *sslmode=verify-full*|*sslmode=verify-ca*) ;; *) echo "weak sslmode" >&2; exit 1;; esac
pg_isready -q -h "$HOST" -p "$PORT"
ssl=$(psql "$DATABASE_URL" -Atc "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
[ "$ssl" = t ] || { echo "not TLS" >&2; exit 1; }
if psql "host=$HOST port=$PORT dbname=$EXPECTED_DB user=nobody sslmode=disable connect_timeout=3" -Atc 'SELECT 1' 2>/tmp/bench-preflight.$$; then
	echo "plaintext accepted" >&2; exit 1
fi
grep -q 'no encryption' /tmp/bench-preflight.$$ || { cat /tmp/bench-preflight.$$ >&2; exit 1; }
rm -f /tmp/bench-preflight.$$
ca=$(printf '%s' "$DATABASE_URL" | sed -n 's/.*sslrootcert=\([^&]*\).*/\1/p' | sed 's/%2F/\//g')
end=$(openssl s_client -starttls postgres -connect "$HOST:$PORT" -CAfile "$ca" -verify_return_error </dev/null 2>/dev/null | openssl x509 -noout -enddate)
[ -n "$end" ] || { echo "certificate not verified" >&2; exit 1; }
db=$(psql "$DATABASE_URL" -Atc "SELECT current_database()")
[ "$db" = "$EXPECTED_DB" ] || { echo "wrong database $db" >&2; exit 1; }
