#!/usr/bin/env bash
# One large issue (issue 7, item 5): wall time of `gazette publish` on a newsletter holding a
# single issue of 1, 3 and 10 MB, next to pulldown-cmark alone (bench/pulldown.rs) and `cat`
# on the same file, in the same run. Time must grow linearly with the size.
#
#   bash bench/large_issue.sh [MB...]          # default: 1 3 10
#
# The issue is the concatenated bodies of bench/generate.py's synthetic issues (mixed Chinese
# and English with headings, links, lists, quotes, code and tables). RUNS (default 3): each
# figure is the best wall time of RUNS runs. Prerequisites: python3, GNU time. Not run in CI.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(1 3 10)
runs=${RUNS:-3}

cargo build --release --locked --quiet --bin gazette
cargo build --release --locked --quiet --example pulldown
gazette=$repo/target/release/gazette
pulldown=$repo/target/release/examples/pulldown

work=$(mktemp -d /var/tmp/gazette-large.XXXXXX)
trap 'rm -rf "$work"' EXIT
python3 bench/generate.py 200 "$work/archive" >/dev/null
export GAZETTE_NOW=2030-01-01T00:00:00Z

# best COMMAND...: the best wall time of $runs runs, in seconds.
best() {
    local b="" i t
    for ((i = 0; i < runs; i++)); do
        rm -rf "$site/feeds" "$site/outbox"
        /usr/bin/time -f '%e' -o "$work/time" "$@" >/dev/null 2>"$work/stderr" || {
            cat "$work/stderr" >&2
            exit 1
        }
        t=$(cat "$work/time")
        if [ -z "$b" ] || awk -v a="$t" -v b="$b" 'BEGIN { exit !(a < b) }'; then b=$t; fi
    done
    echo "$b"
}

printf '%6s %10s %12s %10s %8s %10s\n' MB "bytes" "gazette s" "pulldown s" "cat s" "gazette s/MB"
for mb in "${sizes[@]}"; do
    site=$work/site-$mb
    mkdir -p "$site/issues"
    cp "$work/archive/gazette/gazette.toml" "$site/"
    cp -r "$work/archive/gazette/templates" "$site/"
    python3 - "$work/archive/gazette/issues" "$site/issues/big.md" "$mb" <<'PY'
import pathlib, sys
src, out, mb = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), float(sys.argv[3])
bodies = [p.read_text().split("+++\n", 2)[2] for p in sorted(src.glob("*.md"))]
parts, size, i = [], 0, 0
while size < mb * 1_000_000:
    parts.append(bodies[i % len(bodies)] + "\n")
    size += len(parts[-1].encode())
    i += 1
out.write_text('+++\ntitle = "One large issue"\ndate = 2020-01-01\nid = "tag:example.org,2020:big"\n+++\n\n' + "".join(parts))
PY
    bytes=$(stat -c %s "$site/issues/big.md")
    g=$(best "$gazette" -C "$site" publish --quiet)
    p=$(best "$pulldown" "$site/issues")
    c=$(best cat "$site/issues/big.md")
    printf '%6s %10s %12s %10s %8s %10s\n' "$mb" "$bytes" "$g" "$p" "$c" \
        "$(awk -v g="$g" -v b="$bytes" 'BEGIN { printf "%.2f", g / (b / 1e6) }')"
done
echo
echo "machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p'), $(free -h | awk '/^Mem:/ { print $2 }') RAM"
echo "gazette at $(git -C "$repo" rev-parse --short HEAD), best of $runs runs; load average $(cut -d' ' -f1-3 /proc/loadavg)"
