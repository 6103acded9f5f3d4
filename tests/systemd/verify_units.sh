#!/bin/sh
# Checks screed's systemd units with systemd-analyze verify.
#
# usage: verify_units.sh SYSTEMD_ANALYZE DIR
# DIR holds the units as configured for the build tree: ExecStart= names the
# built screed, so verify also checks that the binary exists and is
# executable. What verify checks (systemd 252): every key and section is
# known, values parse, referenced units (Requires=, Also=, Service=) load,
# ExecStart= is an executable, templates instantiate. What it does not: that
# User=/Group= scree exist (it does not resolve users offline, so a machine
# without the scree user passes; sysusers creates it at install), and man
# pages (--man=no: screed(8) is not written yet). verify exits 0 on unknown
# keys, printing a warning, so any output at all fails this test.
# Exit 77 (a CTest skip) without systemd-analyze.
set -u
analyze=$1
dir=$2
if ! command -v "$analyze" >/dev/null 2>&1; then
  echo "SKIP: systemd-analyze not found"
  exit 77
fi
status=0
cd "$dir" || exit 1
# Templates are checked through an instance, as systemd would load them.
for u in screed.service screed.socket screed@0.service screed@0.socket; do
  src=$u
  case $u in screed@0.*) src=screed@.${u##*.} ;; esac
  [ -f "$src" ] || { echo "FAIL: $src missing"; status=1; continue; }
  out=$("$analyze" verify --man=no --generators=no "./$u" 2>&1)
  rc=$?
  if [ $rc -ne 0 ] || [ -n "$out" ]; then
    echo "FAIL: $u (exit $rc)"
    echo "$out"
    status=1
  else
    echo "ok: $u"
  fi
done
# The check has teeth: an unknown key and a missing binary are reported.
tmp=$(mktemp -d)
sed -e 's/^\[Service\]$/[Service]\nNoSuchKey=1/' -e 's#^ExecStart=[^ ]*#ExecStart=/nonexistent/screed#' \
  screed.service >"$tmp/broken.service"
out=$("$analyze" verify --man=no --generators=no "$tmp/broken.service" 2>&1)
rm -rf "$tmp"
case $out in
  *NoSuchKey*nonexistent* | *nonexistent*NoSuchKey*) echo "ok: a broken unit is reported" ;;
  *) echo "FAIL: verify did not report a broken unit: $out"; status=1 ;;
esac
exit $status
