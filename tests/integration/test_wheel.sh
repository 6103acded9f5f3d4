#!/bin/sh
# The wheel on its own: installs the built manylinux wheel into a fresh venv
# (no system site packages; pip fetches numpy) and, with the system's libuv
# and protobuf-c hidden, runs screed --device cpu from the venv's console
# script, screectl info, and a put/get from Python.
#
# usage: test_wheel.sh WHEEL [PYTHON]
# Hiding: in a private mount namespace (unshare -m), /dev/null is bind-mounted
# over every libuv and libprotobuf-c shared object that ldconfig knows, so a
# program that still needed them would fail to load. The test first shows
# that hiding works (ctypes cannot load libuv.so.1 there). Where no mount
# namespace can be made (not root, no CAP_SYS_ADMIN), the same checks run
# with the libraries visible and the test exits 77 (a skip) saying so.
set -eu
wheel=$1
python=${2:-python3}
[ -f "$wheel" ] || { echo "FAIL: no wheel at $wheel (make wheel builds it)"; exit 1; }

case $(basename "$wheel") in
  *-manylinux_*.whl | *-manylinux2014_*.whl) echo "ok: manylinux tag: $(basename "$wheel")" ;;
  *) echo "FAIL: $(basename "$wheel") is not tagged manylinux"; exit 1 ;;
esac

tmp=$(mktemp -d /tmp/scree-wheel-test.XXXXXX)
daemon_pid=
cleanup() {
  [ -n "$daemon_pid" ] && kill "$daemon_pid" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

"$python" -m venv "$tmp/venv"
venv=$tmp/venv
if "$venv/bin/python" -c 'import sys; sys.exit(0 if sys.prefix != sys.base_prefix else 1)' &&
   ! "$venv/bin/python" -c 'import numpy' 2>/dev/null; then
  echo "ok: fresh venv without system site packages"
else
  echo "FAIL: the venv sees system site packages"; exit 1
fi
"$venv/bin/python" -m pip install -q --disable-pip-version-check "$wheel"
echo "ok: installed $(basename "$wheel")"

# Every libuv and protobuf-c shared object the loader could find.
hidden=$(ldconfig -p | awk '/(libuv|libprotobuf-c)\.so/ { print $NF }' | while read -r f; do
  readlink -f "$f"; done | sort -u)
[ -n "$hidden" ] || echo "note: ldconfig knows no libuv or protobuf-c: nothing to hide"

cat >"$tmp/inner.sh" <<'EOF'
set -eu
venv=$1 tmp=$2 hidden=$3
for f in $hidden; do mount --bind /dev/null "$f"; done
if [ -n "$hidden" ]; then
  if "$venv/bin/python" -c 'import ctypes; ctypes.CDLL("libuv.so.1")' 2>/dev/null ||
     "$venv/bin/python" -c 'import ctypes; ctypes.CDLL("libprotobuf-c.so.1")' 2>/dev/null; then
    echo "FAIL: the system's libuv or protobuf-c still loads: hiding did not work"; exit 1
  fi
  echo "ok: hidden from the loader:" $hidden
fi
sock=$tmp/screed.sock
"$venv/bin/screed" --device cpu --socket "$sock" --memory-limit 64M --log-level warn &
pid=$!
i=0
while [ ! -S "$sock" ]; do
  i=$((i + 1))
  if [ $i -gt 100 ] || ! kill -0 $pid 2>/dev/null; then
    echo "FAIL: screed from the venv did not start"; exit 1
  fi
  sleep 0.1
done
echo "ok: screed --device cpu (the venv's console script) serves $sock"
"$venv/bin/screectl" --socket "$sock" info >"$tmp/info.txt"
grep -q . "$tmp/info.txt" || { echo "FAIL: screectl info printed nothing"; exit 1; }
echo "ok: screectl info"
SOCK=$sock "$venv/bin/python" - <<'PY'
import os
import numpy as np
import scree

assert scree.native_available(), "the wheel's scree._native did not load"
c = scree.Client(os.environ["SOCK"])
arr = scree.pack([np.arange(n * 4, dtype=np.float32).reshape(n, 4) for n in (3, 0, 5)])
c.put("wheel-test", arr)
b = c.get("wheel-test", framework="numpy")
assert np.array_equal(np.asarray(b.values), np.asarray(arr.values)), "values differ"
assert np.array_equal(np.asarray(b.offsets), [0, 3, 3, 8]), "offsets differ"
b.close()
c.close()
print("ok: put/get from Python through the wheel's extension")
PY
kill -TERM $pid
rc=0
wait $pid || rc=$?
[ $rc -eq 0 ] || { echo "FAIL: screed exited $rc on SIGTERM"; exit 1; }
echo "ok: screed stopped cleanly"
EOF

if [ "$(id -u)" = 0 ] && unshare -m --propagation private true 2>/dev/null; then
  unshare -m --propagation private sh "$tmp/inner.sh" "$venv" "$tmp" "$hidden"
  echo "PASS"
else
  echo "SKIP (hiding): no private mount namespace here (needs root); checking with the" \
       "system libraries visible"
  sh "$tmp/inner.sh" "$venv" "$tmp" ""
  exit 77
fi
