#!/usr/bin/env bash
# Benchmark of `gazette send`: N subscribers (default 100,000), the sample issue, Postfix's
# smtp-sink on 127.0.0.1, concurrency 4 (and 1 and 16), end to end including the ledger.
# Reference: Postfix's smtp-source sending the same number of messages of the same size over
# 4 sessions to the same sink. Prints messages per second, peak RSS and the ratio.
#
# usage: bench/send.sh [N]      (needs smtp-sink, smtp-source, /usr/bin/time: bash .ci/setup)
# GAZETTE=PATH measures another build (an older one, to compare).
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-100000}
SLUG=2023-03-papers
cargo build --release --locked --quiet
G=${GAZETTE:-$PWD/target/release/gazette}
WORK=$(mktemp -d)
trap 'kill "${SINK_PID:-}" 2>/dev/null || true; rm -rf "$WORK"' EXIT

echo "machine: $(nproc) CPUs, $(lscpu | grep 'Model name' | sed 's/Model name: *//')"
echo "disk under $WORK: $(df -T "$WORK" | awk 'NR==2 {print $2}')"

# The sample newsletter with N subscribers; the imported database is copied for every run.
mkdir -p "$WORK/n"
cp -r gazette.toml issues templates "$WORK/n/"
export GAZETTE_SECRET=bench-secret-not-for-production GAZETTE_NOW=2026-01-01T00:00:00Z
python3 -c "
import sys
print('email,name')
for i in range($N): print(f'reader{i:06d}@example.org,Reader {i}')" > "$WORK/list.csv"
"$G" -C "$WORK/n" --quiet subscribers import "$WORK/list.csv"
cp "$WORK/n/.gazette/gazette.db" "$WORK/fresh.db"

# The size of one message, for smtp-source.
mkdir -p "$WORK/one"
cp -r gazette.toml issues templates "$WORK/one/"
echo "reader000000@example.org" | sed '1i email' > "$WORK/one.csv"
"$G" -C "$WORK/one" --quiet subscribers import "$WORK/one.csv"
"$G" -C "$WORK/one" --quiet send "$SLUG" --dry-run
SIZE=$(stat -c %s "$WORK"/one/outbox/"$SLUG"/dry-run/*.eml)
echo "message size: $SIZE bytes"

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
smtp-sink -u root "127.0.0.1:$PORT" 1000 > /dev/null &
SINK_PID=$!
sleep 0.5

echo
echo "reference: smtp-source -s 4 -m $N -l $SIZE (a new connection per message)"
start=$(date +%s.%N)
smtp-source -s 4 -m "$N" -l "$SIZE" -f digest@digest.example.org -t reader@example.org "127.0.0.1:$PORT"
end=$(date +%s.%N)
REF=$(python3 -c "print(round($N / ($end - $start)))")
echo "  $REF messages/s"
echo "reference: smtp-source -d -s 4 -m $N -l $SIZE (connections reused, as gazette does)"
start=$(date +%s.%N)
smtp-source -d -s 4 -m "$N" -l "$SIZE" -f digest@digest.example.org -t reader@example.org "127.0.0.1:$PORT"
end=$(date +%s.%N)
REF_D=$(python3 -c "print(round($N / ($end - $start)))")
echo "  $REF_D messages/s"

# Each run: concurrency, then the ledger_sync setting ("full" is the default).
for RUN in 4:full 1:full 16:full 4:normal; do
  C=${RUN%%:*}
  SYNC=${RUN#*:}
  sed -i '/^ledger_sync/d' "$WORK/n/gazette.toml"
  echo "ledger_sync = \"$SYNC\"" >> "$WORK/n/gazette.toml"   # [smtp] is the last table
  cp "$WORK/fresh.db" "$WORK/n/.gazette/gazette.db"
  rm -f "$WORK/n/.gazette/gazette.db-wal" "$WORK/n/.gazette/gazette.db-shm"
  echo
  echo "gazette send --concurrency $C, ledger_sync = $SYNC ($N subscribers)"
  GAZETTE_SMTP_URL="smtp://127.0.0.1:$PORT" /usr/bin/time -v -o "$WORK/time.txt" \
    "$G" -C "$WORK/n" --json send "$SLUG" --yes --concurrency "$C" > "$WORK/report.json"
  python3 - "$WORK/report.json" "$WORK/time.txt" "$REF" "$REF_D" "$C" <<'EOF'
import json, re, sys
report = json.load(open(sys.argv[1]))
t = open(sys.argv[2]).read()
rss_kib = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", t).group(1))
wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", t).group(1)
parts = [float(p) for p in wall.split(":")]
seconds = sum(p * 60 ** i for i, p in enumerate(reversed(parts)))
rate = report["sent"] / seconds
ref, ref_d, c = int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
print(f"  sent {report['sent']}, failed {report['failed']}, unknown {report['unknown']}")
print(f"  {rate:.0f} messages/s end to end (process wall time {seconds:.1f} s), peak RSS {rss_kib / 1024:.1f} MiB")
print(f"  ratio to smtp-source: {rate / ref:.2f} (per-message connections), {rate / ref_d:.2f} (reused connections)")
if c == "4":
    ok = rate >= 0.7 * ref and rss_kib <= 100 * 1024
    print(f"  target (>= 0.7 x smtp-source, <= 100 MiB): {'met' if ok else 'NOT met'}")
EOF
done
