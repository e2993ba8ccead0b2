#!/usr/bin/env bash
# The publish benchmark (issue 2): wall time and peak RSS of `gazette publish` on a synthetic
# archive of N issues, cold (no feeds/ yet) and with nothing changed, next to Hugo building the
# same content, in the same run.
#
#   bash bench/publish.sh [N...]          # default: 600 10000
#
# Environment: GAZETTE (default: target/release/gazette, built here) to measure another build,
# RUNS (default 3; each figure is the best wall time of RUNS runs and the largest
# peak RSS of them), HUGO=0 to skip Hugo, BENCH_DIR to keep the archives and outputs somewhere
# (default: a new directory under /var/tmp, removed at the end).
# Prerequisites, installed with apt-get when missing: GNU time (/usr/bin/time), hugo, python3.
# Not run in CI.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(600 10000)
runs=${RUNS:-3}
with_hugo=${HUGO:-1}

need=()
[ -x /usr/bin/time ] || need+=(time)
[ "$with_hugo" = 0 ] || command -v hugo >/dev/null || need+=(hugo)
command -v python3 >/dev/null || need+=(python3)
if [ ${#need[@]} -gt 0 ]; then
    apt-get update -qq && apt-get install -y -qq "${need[@]}"
fi

# Two invocations: the example brings in dev-dependencies, whose features must not change the
# gazette binary being measured.
cargo build --release --locked --quiet --bin gazette
cargo build --release --locked --quiet --example pulldown
gazette=${GAZETTE:-$repo/target/release/gazette}
pulldown=$repo/target/release/examples/pulldown

if [ -n "${BENCH_DIR:-}" ]; then
    work=$BENCH_DIR
    mkdir -p "$work"
else
    work=$(mktemp -d /var/tmp/gazette-bench.XXXXXX)
    trap 'rm -rf "$work"' EXIT
fi
# Outputs of earlier runs are moved here and deleted only at the end: on ext4, creating files
# right after deleting thousands of others is several times slower (the inode allocator skips
# recently deleted inodes), which would measure the benchmark's cleanup, not the tool. For the
# same reason leave five minutes between two runs of this script (it deletes its outputs at the
# end), and expect noisy cold figures while other jobs on the machine delete many files.
trash=$work/trash
mkdir -p "$trash"

# Issues are dated 1995 onwards: all published at this fixed instant.
export GAZETTE_NOW=2030-01-01T00:00:00Z

# measure PREPARE COMMAND...: runs PREPARE then COMMAND (timed) $runs times; prints
# "best-wall-seconds peak-rss-KiB least-cpu-seconds" (CPU = user + system, which other load on
# the machine disturbs less than wall time).
measure() {
    local prepare=$1
    shift
    local best="" rss=0 cpu="" i wall kib user sys
    for ((i = 0; i < runs; i++)); do
        $prepare
        /usr/bin/time -f '%e %M %U %S' -o "$work/time" "$@" >/dev/null 2>"$work/stderr" || {
            cat "$work/stderr" >&2
            exit 1
        }
        read -r wall kib user sys <"$work/time"
        if [ -z "$best" ] || awk -v a="$wall" -v b="$best" 'BEGIN { exit !(a < b) }'; then
            best=$wall
        fi
        [ "$kib" -gt "$rss" ] && rss=$kib
        cpu=$(awk -v u="$user" -v s="$sys" -v c="$cpu" 'BEGIN { t = u + s; printf "%.2f\n", (c == "" || t < c) ? t : c }')
    done
    echo "$best $rss $cpu"
}

set_aside() {
    local dir=$1
    [ -e "$dir" ] && mv "$dir" "$trash/$(basename "$dir").$RANDOM$RANDOM"
    return 0
}

results=()
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
row() { # tool N run wall kib cpu ratio
    results+=("$(printf '%-9s %6s  %-10s %8s %8s %10s %9s' "$1" "$2" "$3" "$4" "$6" "$(($5 / 1024))" "$7")")
}

for n in "${sizes[@]}"; do
    archive=$work/archive-$n
    if [ ! -d "$archive/gazette/issues" ]; then
        python3 bench/generate.py "$n" "$archive"
    fi
    site=$archive/gazette

    cold_prepare() { set_aside "$site/feeds"; set_aside "$site/outbox"; }
    read -r g_wall g_kib g_cpu < <(measure cold_prepare "$gazette" -C "$site" publish --quiet)
    none() { :; }
    read -r u_wall u_kib u_cpu < <(measure none "$gazette" -C "$site" publish --quiet)

    ratio="-"
    if [ "$with_hugo" != 0 ]; then
        hugo_prepare() { set_aside "$archive/hugo/public"; set_aside "$archive/hugo/resources"; }
        read -r h_wall h_kib h_cpu < <(measure hugo_prepare hugo --quiet -s "$archive/hugo")
        ratio=$(awk -v h="$h_wall" -v g="$g_wall" 'BEGIN { printf "%.1fx", h / g }')
    fi
    read -r p_wall p_kib p_cpu < <(measure none "$pulldown" "$site/issues")

    row gazette "$n" cold "$g_wall" "$g_kib" "$g_cpu" "$ratio"
    row gazette "$n" no-change "$u_wall" "$u_kib" "$u_cpu" ""
    [ "$with_hugo" = 0 ] || row hugo "$n" cold "$h_wall" "$h_kib" "$h_cpu" ""
    row pulldown "$n" md-to-html "$p_wall" "$p_kib" "$p_cpu" ""
done
rm -rf "$trash"

echo
echo "machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p'), $(free -h | awk '/^Mem:/ { print $2 }') RAM"
echo "gazette: $gazette at $(git -C "$repo" rev-parse --short HEAD), $(hugo version 2>/dev/null | cut -d' ' -f2 || echo 'no hugo'), best of $runs runs"
echo "load average before: $load_before; after: $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-9s %6s  %-10s %8s %8s %10s %9s\n' tool N run "wall s" "CPU s" "RSS MiB" "hugo/gaz"
printf '%s\n' "${results[@]}"
