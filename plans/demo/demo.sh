#!/bin/sh
# make demo: a sandbox with an old self-managed-style cluster and a new
# managed-style one (TLS enforced), the shop app running on the old one, and
# plans/django-managed-postgres.yaml moving it: a dry run first, then for
# real; then the journal. Everything lives in .demo/ and stops at the end.
set -eu
bin=${1:-bin/cutover}
top=$(pwd)
STATE=$top/.demo
export STATE APP_DIR="$top/plans/demo" APP_ENV="$STATE/app.env" APP_PORT=${APP_PORT:-18080}
export CUTOVER_JOURNAL_DIR="$STATE/journal" PYTHONDONTWRITEBYTECODE=1
rm -rf "$STATE"; mkdir -p "$STATE"
cleanup() {
	[ -f "$STATE/app.pid" ] && kill -- "-$(cat "$STATE/app.pid")" 2>/dev/null || true
	"$bin" sandbox down --dir "$STATE/sandbox" >/dev/null 2>&1 || true
}
trap cleanup EXIT INT TERM

echo "== sandbox: old and new PostgreSQL clusters"
"$bin" sandbox up --dir "$STATE/sandbox"
eval "$("$bin" sandbox env --dir "$STATE/sandbox")"

echo; echo "== the app today: the old database, migrated to the previous release, running"
printf 'SECRET_KEY=demo-only\nDATABASE_URL=%s\n' "$OLD_DATABASE_URL" >"$APP_ENV"
chmod 600 "$APP_ENV"
(cd "$APP_DIR" && DATABASE_URL=$OLD_DATABASE_URL /usr/bin/python3 manage.py migrate --noinput catalog 0003 | tail -1)
sh "$APP_DIR/restart.sh"
/usr/bin/python3 -c "import urllib.request,sys; print(urllib.request.urlopen(sys.argv[1]).read().decode())" "http://127.0.0.1:$APP_PORT/healthz"

set -- --param environment=staging --param env_file="$APP_ENV" --param app_dir="$APP_DIR" \
	--param backup_dir="$STATE/backups" --param app_url="http://127.0.0.1:$APP_PORT" \
	--param restart_cmd="sh $APP_DIR/restart.sh"
echo; echo "== dry run: read-only checks, nothing changes"
"$bin" run plans/django-managed-postgres.yaml --dry-run "$@"

echo; echo "== the cutover"
"$bin" run plans/django-managed-postgres.yaml "$@"
/usr/bin/python3 -c "import urllib.request,sys; print(urllib.request.urlopen(sys.argv[1]).read().decode())" "http://127.0.0.1:$APP_PORT/healthz"

echo; echo "== its journal"
last=$(cd "$CUTOVER_JOURNAL_DIR" && ls -- *.jsonl | tail -1)
"$bin" journal show "${last%.jsonl}"
"$bin" journal verify --all
