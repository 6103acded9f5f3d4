#!/bin/sh
# Checks screed's systemd units with systemd-analyze verify.
#
# usage: verify_units.sh SYSTEMD_ANALYZE DIR [MANDIR]
# DIR holds the units as configured for the build tree: ExecStart= names the
# built screed, so verify also checks that the binary exists and is
# executable. MANDIR (man8/screed.8 in it), when given, becomes MANPATH and
# verify checks the Documentation=man: pages too. What verify checks (systemd 252): every key and section is
# known, values parse, referenced units (Requires=, Also=, Service=) load,
# ExecStart= is an executable, templates instantiate. What it does not: that
# User=/Group= scree exist (it does not resolve users offline, so a machine
# without the scree user passes; sysusers creates it at install), and man
# pages when no MANDIR is given. verify exits 0 on unknown
# keys, printing a warning, so any output at all fails this test.
# Exit 77 (a CTest skip) without systemd-analyze.
set -u
analyze=$1
dir=$2
man=--man=no
if [ $# -ge 3 ]; then
  MANPATH=$(cd "$3" && pwd) || exit 1
  export MANPATH
  man=--man=yes
fi
if ! command -v "$analyze" >/dev/null 2>&1; then
  echo "SKIP: systemd-analyze not found"
  exit 77
fi
status=0
cd "$dir" || exit 1
# Templates are checked through an instance, as systemd would load them.
for u in screed.service screed.socket screed@0.service screed@0.socket \
         screed-cpu.service screed-cpu.socket; do
  src=$u
  case $u in screed@0.*) src=screed@.${u##*.} ;; esac
  [ -f "$src" ] || { echo "FAIL: $src missing"; status=1; continue; }
  out=$("$analyze" verify $man --generators=no "./$u" 2>&1)
  rc=$?
  if [ $rc -ne 0 ] || [ -n "$out" ]; then
    echo "FAIL: $u (exit $rc)"
    echo "$out"
    status=1
  else
    echo "ok: $u"
  fi
done
# The hardening stays: each service's exposure (systemd-analyze security,
# docs/systemd.md) is at most 1.0 of 10 (5.6 before the units were
# hardened).
for u in screed.service screed@0.service screed-cpu.service; do
  out=$("$analyze" security --offline=true --threshold=10 "./$u" 2>&1)
  rc=$?
  score=$(printf '%s\n' "$out" | sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')
  if [ $rc -ne 0 ]; then
    echo "FAIL: $u exposure ${score:-unknown} is above 1.0 (exit $rc)"
    printf '%s\n' "$out" | grep '^✗'
    status=1
  else
    echo "ok: $u exposure $score"
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
