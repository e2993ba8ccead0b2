#!/usr/bin/env bash
# Benchmark of `gazette inbound`: a Maildir of N messages (default 10,000) made from every
# fixture in tests/fixtures/inbound/ (round-robin, each copy's addresses and Message-ID varied
# by domain), read with `gazette inbound --dry-run` (release build), then for real (events in
# the database, new/ moved to cur/). Reference in the same run: Python's `email` parser
# (bench/inbound_email.py) over the same messages. Prints messages per second, peak RSS and
# the ratio. Targets: >= 2,000 messages/s, <= 100 MiB.
#
# usage: bench/inbound.sh [N]      (needs python3 and /usr/bin/time: bash .ci/setup)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-10000}
cargo build --release --locked --quiet
G="$PWD/target/release/gazette"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

echo "machine: $(nproc) CPUs, $(lscpu | grep 'Model name' | sed 's/Model name: *//'), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "python: $(python3 --version)"

mkdir -p "$WORK/n" "$WORK/Maildir/new" "$WORK/Maildir/cur" "$WORK/Maildir/tmp"
cp -r gazette.toml issues templates "$WORK/n/"
export GAZETTE_SECRET=bench-secret-not-for-production GAZETTE_NOW=2026-01-01T00:00:00Z
python3 - "$N" "$WORK/Maildir/new" tests/fixtures/inbound <<'PY'
import os, re, sys
n, out, src = int(sys.argv[1]), sys.argv[2], sys.argv[3]
fixtures = [open(os.path.join(src, f), "rb").read() for f in sorted(os.listdir(src)) if f.endswith(".eml")]
at = re.compile(rb"@([A-Za-z0-9-]+\.)")
for i in range(n):
    body = at.sub(b"@d%d.\\1" % i, fixtures[i % len(fixtures)])
    with open(os.path.join(out, "%010d.M%dP1.bench" % (1764669600 + i, i)), "wb") as f:
        f.write(body)
PY
echo "maildir: $N messages from $(ls tests/fixtures/inbound/*.eml | wc -l) fixtures, $(du -sh "$WORK/Maildir/new" | cut -f1)"
# Warm the page cache so every run reads from memory.
cat "$WORK"/Maildir/new/* > /dev/null

# run NAME COMMAND...: prints seconds, messages/s and peak RSS; sets RATE and RSS.
run() {
  local name=$1
  shift
  local start end
  start=$(date +%s.%N)
  /usr/bin/time -v -o "$WORK/time.txt" "$@" > "$WORK/out.txt"
  end=$(date +%s.%N)
  RSS=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$WORK/time.txt")
  RATE=$(python3 -c "print(round($N / ($end - $start)))")
  printf '%-34s %6.2f s  %7s messages/s  peak RSS %6.1f MiB\n' "$name" \
    "$(python3 -c "print($end - $start)")" "$RATE" "$(python3 -c "print($RSS / 1024)")"
}

echo
run "python email (reference)" python3 bench/inbound_email.py "$WORK/Maildir"
REF=$RATE REF_RSS=$RSS
test "$(cat "$WORK/out.txt")" = "$N"
run "gazette inbound --dry-run" "$G" -C "$WORK/n" inbound --dry-run "$WORK/Maildir"
DRY=$RATE DRY_RSS=$RSS
echo "  $(cat "$WORK/out.txt")"
run "gazette inbound (database, moves)" "$G" -C "$WORK/n" inbound "$WORK/Maildir"
echo "  $(cat "$WORK/out.txt")"
test "$(ls "$WORK/Maildir/cur" | wc -l)" = "$N"

echo
echo "ratio (gazette --dry-run / python email): $(python3 -c "print(round($DRY / $REF, 1))")x messages/s," \
  "$(python3 -c "print(round($DRY_RSS / $REF_RSS, 2))")x peak RSS"
python3 -c "
ok = $DRY >= 2000 and $DRY_RSS <= 100 * 1024
print('targets (>= 2,000 messages/s, <= 100 MiB):', 'met' if ok else 'NOT met')"
