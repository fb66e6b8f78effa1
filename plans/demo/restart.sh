#!/bin/sh
# Restart the demo app so that it reads $APP_ENV, and return once it listens,
# as `systemctl restart` would. Used by the demo as the plan's restart_cmd.
# Needs APP_ENV, APP_DIR, APP_PORT and STATE (a directory for pid and log).
set -eu
[ -f "$STATE/app.pid" ] && kill -- "-$(cat "$STATE/app.pid")" 2>/dev/null || true
set -a; . "$APP_ENV"; set +a
cd "$APP_DIR"
setsid /usr/bin/python3 manage.py runserver "127.0.0.1:$APP_PORT" --noreload >"$STATE/app.log" 2>&1 </dev/null &
echo $! >"$STATE/app.pid"
for i in $(seq 1 100); do
	/usr/bin/python3 -c "import socket,sys; socket.create_connection(('127.0.0.1', int(sys.argv[1])), 1)" "$APP_PORT" 2>/dev/null && exit 0
	sleep 0.1
done
echo "the app did not start; its log:" >&2
cat "$STATE/app.log" >&2
exit 1
