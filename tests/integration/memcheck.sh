#!/bin/sh
# screed under valgrind memcheck through a full workload: producers and
# consumers across processes, clients killed with SIGKILL mid-request
# (chaos_child), deletes, list and stats through screectl, then SIGTERM.
# Fails on any memcheck error or definite/indirect leak, or when screed does
# not exit 0.
#
# usage: memcheck.sh SCREED PRODUCER CONSUMER CHAOS_CHILD SCREECTL
set -u
screed=$1 producer=$2 consumer=$3 chaos=$4 screectl=$5
dir=$(mktemp -d /tmp/scree-memcheck.XXXXXX)
sock=$dir/screed.sock
trap 'rm -rf "$dir"' EXIT

valgrind --quiet --error-exitcode=99 --leak-check=full --show-leak-kinds=definite,indirect \
  --errors-for-leak-kinds=definite,indirect --track-fds=no --log-file="$dir/valgrind.log" \
  "$screed" --socket "$sock" --memory-limit 256M --arena-size 8M --log-level warn \
  2>"$dir/screed.log" &
pid=$!
i=0
until "$screectl" --socket "$sock" stats >/dev/null 2>&1; do
  i=$((i + 1))
  if [ $i -gt 600 ] || ! kill -0 $pid 2>/dev/null; then
    echo "memcheck: screed did not come up"; cat "$dir/screed.log" "$dir/valgrind.log"; exit 1
  fi
  sleep 0.1
done

fail=0
for n in 1 2 3 4; do
  "$producer" "$sock" "mc-$n" $n 33 100 >"$dir/p$n" || fail=1
  "$consumer" "$sock" "mc-$n" $n 33 100 >"$dir/c$n" || fail=1
  cmp -s "$dir/p$n" "$dir/c$n" || { echo "memcheck: checksums differ for mc-$n"; fail=1; }
done
# Clients killed at random points, some mid-request.
for s in 1 2 3 4 5 6 7 8 9 10 11 12; do
  case $((s % 4)) in 0) mode=raw ;; 1) mode=ops ;; 2) mode=thread ;; *) mode=parent ;; esac
  "$chaos" "$sock" $s $mode & cpid=$!
  sleep 0.2
  kill -9 $cpid 2>/dev/null
  wait $cpid 2>/dev/null
done
"$screectl" --socket "$sock" list >/dev/null || fail=1
"$screectl" --socket "$sock" delete mc-1 >/dev/null || fail=1
"$screectl" --socket "$sock" stat mc-2 >/dev/null || fail=1
"$screectl" --socket "$sock" stats >"$dir/stats" || fail=1

kill -TERM $pid
wait $pid
st=$?
if [ $st -ne 0 ] || [ -s "$dir/valgrind.log" ]; then
  echo "memcheck: screed exited with status $st under valgrind"
  cat "$dir/valgrind.log" "$dir/screed.log"
  exit 1
fi
[ $fail -eq 0 ] || { echo "memcheck: the workload failed"; cat "$dir/screed.log"; exit 1; }
echo "memcheck: screed clean under valgrind ($(grep -E '^requests' "$dir/stats"))"
