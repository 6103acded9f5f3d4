#!/bin/sh
# The C pipeline end to end against a screed of its own on host memory:
# the consumer waits before anything exists, the producer puts 20 steps,
# both must exit 0, and no batch, lease or waiter may be left.
# Usage: run_test.sh SCREED SCREECTL PRODUCER CONSUMER
set -eu
screed=$1 screectl=$2 producer=$3 consumer=$4
dir=$(mktemp -d /tmp/scree-pipeline-XXXXXX)
sock=$dir/screed.sock
"$screed" --socket "$sock" --log-level warn --memory-limit 64M --arena-size 4M 2>"$dir/screed.log" &
daemon=$!
cleanup() {
  kill "$daemon" 2>/dev/null || true
  wait "$daemon" 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT
i=0
until [ -S "$sock" ]; do
  i=$((i + 1))
  [ $i -lt 500 ] || { echo "screed did not start"; cat "$dir/screed.log"; exit 1; }
  sleep 0.01
done

"$consumer" --socket "$sock" --steps 20 --timeout 30 >"$dir/consumer.out" &
cons=$!
sleep 0.2 # the consumer is waiting for steps/0 before it exists
"$producer" --socket "$sock" --steps 20 --interval-ms 5 >"$dir/producer.out"
wait "$cons"
cat "$dir/producer.out" "$dir/consumer.out"
[ "$(grep -c 'values checked' "$dir/consumer.out")" = 20 ] || { echo "the consumer did not check 20 steps"; exit 1; }

# An expired wait names the batch and its wait.
if "$consumer" --socket "$sock" --steps 1 --prefix none/ --timeout 0.1 2>"$dir/err"; then
  echo "the consumer should have timed out"; exit 1
fi
grep -q "batch 'none/0' was not sealed within 100 ms" "$dir/err" || { cat "$dir/err"; exit 1; }

"$screectl" --socket "$sock" stats >"$dir/stats"
for k in "batches: 0" "leases: 0" "waiters: 0" "pending_deletes: 0"; do
  grep -qx "$k" "$dir/stats" || { echo "left behind: expected '$k'"; cat "$dir/stats"; exit 1; }
done
kill -TERM "$daemon"
wait "$daemon" || { echo "screed exited with $?"; cat "$dir/screed.log"; exit 1; }
echo "c_pipeline: ok"
