#!/usr/bin/env bash
# The serve benchmark (issue 9): `gazette serve` next to nginx serving the same feeds/ of the
# sample newsletter, measured with wrk in the same run:
#   (a) conditional GET of rss.xml answered 304 (If-None-Match), requests/s
#   (b) GET of rss.xml with Accept-Encoding: gzip, requests/s
#   (c) peak RSS of gazette serve (VmHWM) after wrk at 256 connections
#   (d) RFC 8058 one-click unsubscribe POSTs/s, each committed (synchronous = FULL) before
#       its 200, every token a different subscriber
#
#   bash bench/serve.sh
#
# Environment: GAZETTE (default: target/release/gazette, built here), DURATION (default 4s),
# SUBSCRIBERS (default 200000: more than (d) can unsubscribe in DURATION).
# Prerequisites, installed with apt-get when missing: nginx, wrk, curl, python3. Not run in CI.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
duration=${DURATION:-4s}
subscribers=${SUBSCRIBERS:-200000}

need=()
[ -x /usr/sbin/nginx ] || need+=(nginx)
command -v wrk >/dev/null || need+=(wrk)
command -v curl >/dev/null || need+=(curl)
command -v python3 >/dev/null || need+=(python3)
if [ ${#need[@]} -gt 0 ]; then
    apt-get update -qq && apt-get install -y -qq "${need[@]}"
fi
if [ -z "${GAZETTE:-}" ]; then
    cargo build --release --locked --quiet --bin gazette
fi
gazette=${GAZETTE:-$repo/target/release/gazette}

work=$(mktemp -d /var/tmp/gazette-serve.XXXXXX)
# nginx's workers run as nobody: they must be able to read feeds/.
chmod 755 "$work"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
wait_port() {
    for _ in $(seq 200); do
        curl -s -o /dev/null "http://127.0.0.1:$1/" && return 0
        sleep 0.05
    done
    echo "nothing listens on port $1" >&2
    exit 1
}

# The sample newsletter, published, with $subscribers subscribers.
news=$work/news
mkdir -p "$news"
cp gazette.toml "$news/"
cp -r issues templates "$news/"
export GAZETTE_NOW=2026-01-01T00:00:00Z
export GAZETTE_SECRET=bench-secret-not-for-production
"$gazette" -C "$news" publish -q
chmod -R a+rX "$news/feeds"
list_id=$(python3 -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["email"]["list_id"])' "$news/gazette.toml")
python3 - "$subscribers" "$work/list.csv" "$work/paths.txt" "$list_id" <<'PY'
import base64, hashlib, hmac, os, sys
n, csv, paths, list_id = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
key = os.environ["GAZETTE_SECRET"].encode()
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
with open(csv, "w") as c, open(paths, "w") as p:
    c.write("email,name\n")
    for i in range(n):
        a = f"reader{i:07d}@example.org"
        c.write(f"{a},\n")
        tag = hmac.new(key, list_id.encode() + b"\0" + a.encode(), hashlib.sha256).digest()[:16]
        p.write(f"/unsubscribe?token={b64(a.encode())}.{b64(tag)}\n")
PY
"$gazette" -C "$news" subscribers import -q "$work/list.csv"

# nginx: its own configuration, etag and gzip on for the feed types, one 127.0.0.1 port.
nginx_port=$(free_port)
mkdir -p "$work/nginx"
cat >"$work/nginx/nginx.conf" <<EOF
worker_processes auto;
daemon off;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log;
events { worker_connections 4096; }
http {
    include /etc/nginx/mime.types;
    access_log off;
    client_body_temp_path $work/nginx/body;
    proxy_temp_path $work/nginx/proxy;
    fastcgi_temp_path $work/nginx/fastcgi;
    uwsgi_temp_path $work/nginx/uwsgi;
    scgi_temp_path $work/nginx/scgi;
    etag on;
    gzip on;
    gzip_min_length 256;
    gzip_types application/rss+xml application/atom+xml application/feed+json application/json
               application/xml text/xml text/css text/plain image/svg+xml;
    gzip_vary on;
    server {
        listen 127.0.0.1:$nginx_port;
        root $news/feeds;
        location = /rss.xml { types { } default_type application/rss+xml; }
    }
}
EOF
/usr/sbin/nginx -c "$work/nginx/nginx.conf" -p "$work/nginx" &
pids+=($!)
wait_port "$nginx_port"

gazette_port=$(free_port)
"$gazette" -C "$news" serve -q --listen "127.0.0.1:$gazette_port" >/dev/null &
gazette_pid=$!
pids+=($gazette_pid)
wait_port "$gazette_port"

etag() {
    curl -s -o /dev/null -D - "$1" | tr -d '\r' | awk -F': ' 'tolower($1) == "etag" { print $2 }'
}
# rate URL wrk-args...: requests/s (fails on any non-2xx/3xx answer or socket error)
rate() {
    local url=$1
    shift
    wrk -t2 -d"$duration" "$@" "$url" >"$work/wrk.out" 2>&1
    # Timeouts (over wrk's 2 s) are only slowness and are counted; errors stop the run.
    if grep -qE 'Non-2xx|Socket errors: connect [1-9]|read [1-9]|write [1-9]' "$work/wrk.out"; then
        cat "$work/wrk.out" >&2
        echo "wrk saw errors against $url" >&2
        exit 1
    fi
    awk '/^Requests\/sec/ { printf "%.0f\n", $2 }' "$work/wrk.out"
}
row() { # name gazette nginx target
    awk -v n="$1" -v g="$2" -v x="$3" -v t="$4" 'BEGIN {
        r = (x > 0) ? sprintf("%.2fx", g / x) : "-";
        printf "%-34s %12s %12s %8s   %s\n", n, g, (x > 0 ? x : "-"), r, t }'
}

g_url=http://127.0.0.1:$gazette_port/rss.xml
n_url=http://127.0.0.1:$nginx_port/rss.xml
[ "$(curl -s "$g_url" | sha256sum)" = "$(curl -s "$n_url" | sha256sum)" ] || {
    echo "gazette and nginx serve different rss.xml bytes" >&2
    exit 1
}
g_etag=$(etag "$g_url")
n_etag=$(etag "$n_url")
[ "$(curl -s -o /dev/null -w '%{http_code}' -H "If-None-Match: $g_etag" "$g_url")" = 304 ]
[ "$(curl -s -o /dev/null -w '%{http_code}' -H "If-None-Match: $n_etag" "$n_url")" = 304 ]
[ "$(curl -s -H 'Accept-Encoding: gzip' "$g_url" | gzip -dc | sha256sum)" = "$(sha256sum <"$news/feeds/rss.xml")" ]

echo "machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p'), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr); load before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "gazette: $("$gazette" --version 2>/dev/null || echo "$gazette") at $(git rev-parse --short HEAD); $(/usr/sbin/nginx -v 2>&1); $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2)"
echo "rss.xml: $(wc -c <"$news/feeds/rss.xml") bytes; wrk -t2 -c64 -d$duration unless said"
printf "%-34s %12s %12s %8s   %s\n" "what" "gazette" "nginx" "ratio" "target"

a_g=$(rate "$g_url" -c64 -H "If-None-Match: $g_etag")
a_n=$(rate "$n_url" -c64 -H "If-None-Match: $n_etag")
row "(a) 304 conditional GET, req/s" "$a_g" "$a_n" ">= nginx"
b_g=$(rate "$g_url" -c64 -H 'Accept-Encoding: gzip')
b_n=$(rate "$n_url" -c64 -H 'Accept-Encoding: gzip')
row "(b) gzip GET, req/s" "$b_g" "$b_n" ">= nginx"

# (c) 256 connections: gzip GETs, then 304s; the peak of the whole process's resident set.
rate "$g_url" -c256 -H 'Accept-Encoding: gzip' >/dev/null
rate "$g_url" -c256 -H "If-None-Match: $g_etag" >/dev/null
rate "$n_url" -c256 -H 'Accept-Encoding: gzip' >/dev/null
g_rss=$(awk '/VmHWM/ { printf "%.1f", $2 / 1024 }' "/proc/$gazette_pid/status")
master=$(cat "$work/nginx/nginx.pid")
n_rss=$(for p in "$master" $(pgrep -P "$master"); do
    awk '/VmHWM/ { print $2 }' "/proc/$p/status"; done | awk '{ s += $1 } END { printf "%.1f", s / 1024 }')
row "(c) peak RSS at 256 conns, MiB" "$g_rss" "$n_rss" "<= 50 (gazette)"

# (d) one-click POSTs, a different subscriber each (tokens computed above).
cat >"$work/post.lua" <<'LUA'
local paths = {}
for line in io.lines(os.getenv("PATHS")) do paths[#paths + 1] = line end
local counter = 0
function setup(thread)
    counter = counter + 1
    thread:set("id", counter)
end
function init()
    i = id - 1
end
function request()
    local path = paths[(i % #paths) + 1]
    i = i + 2
    return wrk.format("POST", path,
        { ["Content-Type"] = "application/x-www-form-urlencoded" }, "List-Unsubscribe=One-Click")
end
LUA
before=$("$gazette" -C "$news" subscribers count)
d_g=$(PATHS=$work/paths.txt rate "http://127.0.0.1:$gazette_port/" -c64 -s "$work/post.lua")
after=$("$gazette" -C "$news" subscribers count)
done_n=$(awk '/requests in/ { print $1 }' "$work/wrk.out")
row "(d) one-click POST, req/s" "$d_g" "-" ">= 1000"
echo "(d): $done_n POSTs answered, $((before - after)) subscribers now unsubscribed (of $before active)"
if [ "$done_n" -le "$subscribers" ] && [ "$((before - after))" -lt "$done_n" ]; then
    echo "some answered unsubscribes are not in the database" >&2
    exit 1
fi
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
