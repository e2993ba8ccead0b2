#!/usr/bin/env bash
# The import benchmark (issue 7, item 12): wall time and peak RSS of `gazette subscribers
# import` of a CSV of N rows into a new database, next to sqlite3's own `.import` of the same
# file into a table of the same shape (no validation), in the same run on the same machine.
#
#   bash bench/import.sh [N...]          # default: 100000 1000000
#
# Environment: GAZETTE (default: target/release/gazette, built here), RUNS (default 3; each
# figure is the best wall time of RUNS runs and the largest peak RSS of them).
# Prerequisites, installed with apt-get when missing: GNU time, sqlite3, python3. Not run in CI.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(100000 1000000)
runs=${RUNS:-3}

need=()
[ -x /usr/bin/time ] || need+=(time)
command -v sqlite3 >/dev/null || need+=(sqlite3)
command -v python3 >/dev/null || need+=(python3)
if [ ${#need[@]} -gt 0 ]; then
    apt-get update -qq && apt-get install -y -qq "${need[@]}"
fi
cargo build --release --locked --quiet --bin gazette
G=${GAZETTE:-$repo/target/release/gazette}
work=$(mktemp -d /var/tmp/gazette-import.XXXXXX)
trap 'rm -rf "$work"' EXIT

# `time_best CMD...`: prints "best_wall_seconds peak_rss_kib" over $runs runs. Before each
# run, $reset is evaluated (a fresh database).
time_best() {
    local best="" peak=0
    for _ in $(seq "$runs"); do
        eval "$reset"
        /usr/bin/time -f "%e %M" -o "$work/time" "$@" >/dev/null 2>"$work/err" || {
            cat "$work/err" >&2; exit 1; }
        read -r wall rss < "$work/time"
        if [ -z "$best" ] || python3 -c "import sys; sys.exit(0 if $wall < $best else 1)"; then
            best=$wall
        fi
        [ "$rss" -gt "$peak" ] && peak=$rss
    done
    echo "$best $peak"
}

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr)"
for n in "${sizes[@]}"; do
    csv=$work/list-$n.csv
    python3 - "$n" "$csv" <<'PY'
import sys
n, path = int(sys.argv[1]), sys.argv[2]
with open(path, "w") as f:
    f.write("email,name\n")
    for i in range(n):
        # Mixed case (addresses are compared without it), names with spaces and CJK.
        f.write(f"Reader{i:07d}@Example{i % 97}.org,读者 {i}\n")
PY
    size=$(du -m "$csv" | cut -f1)
    mkdir -p "$work/n"
    cp gazette.toml "$work/n/"
    echo
    echo "$n rows ($size MB)"
    reset="rm -rf '$work/n/.gazette'"
    read -r g_wall g_rss < <(time_best "$G" -C "$work/n" --quiet subscribers import "$csv")
    reset="rm -f '$work/ref.db'; sqlite3 '$work/ref.db' 'CREATE TABLE subscribers (email TEXT NOT NULL, name TEXT)'"
    read -r s_wall s_rss < <(time_best sqlite3 "$work/ref.db" ".import --csv --skip 1 $csv subscribers")
    count=$("$G" -C "$work/n" subscribers count)
    [ "$count" = "$n" ] || { echo "gazette imported $count of $n" >&2; exit 1; }
    python3 - "$g_wall" "$g_rss" "$s_wall" "$s_rss" <<'PY'
import sys
gw, gr, sw, sr = float(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
print(f"  gazette subscribers import: {gw:.2f} s, peak RSS {gr / 1024:.1f} MiB")
print(f"  sqlite3 .import (reference): {sw:.2f} s, peak RSS {sr / 1024:.1f} MiB")
print(f"  ratio: {gw / sw:.2f}x the time; target <= 3x and <= 100 MiB: "
      f"{'met' if gw <= 3 * sw and gr <= 100 * 1024 else 'NOT met'}")
PY
done
