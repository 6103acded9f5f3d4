#!/bin/sh
# Renders scree's man pages with man -l, as a user would read them, and fails
# on any warning from groff (with -ww: every warning class) or man, on an
# empty rendering, and on a page without NAME, SYNOPSIS and DESCRIPTION.
#
# usage: render.sh PAGE...
# Exit 77 (a CTest skip) where man or groff is missing (man-db, groff-base).
set -u
if ! command -v man >/dev/null 2>&1 || ! command -v groff >/dev/null 2>&1; then
  echo "SKIP: man or groff not found (Debian: man-db groff-base)"
  exit 77
fi
status=0
for page in "$@"; do
  err=$(mktemp)
  out=$(LC_ALL=C.UTF-8 MANWIDTH=80 MAN_KEEP_FORMATTING= man --warnings=w -l "$page" 2>"$err" | col -b)
  rc=$?
  if [ $rc -ne 0 ] || [ -s "$err" ]; then
    echo "FAIL: $page (man exit $rc)"; cat "$err"; status=1
  elif ! printf '%s\n' "$out" | grep -q '^NAME' ||
       ! printf '%s\n' "$out" | grep -q '^SYNOPSIS' ||
       ! printf '%s\n' "$out" | grep -q '^DESCRIPTION'; then
    echo "FAIL: $page lacks NAME, SYNOPSIS or DESCRIPTION"; status=1
  else
    echo "ok: $page ($(printf '%s\n' "$out" | wc -l) lines)"
  fi
  rm -f "$err"
done
exit $status
