#!/bin/sh
# Installs scree's build tree into a temporary prefix, then builds and runs
# tests/consumer against it twice: with find_package(scree) and with
# pkg-config, as users of the installed libraries do.
# Usage: run.sh BUILD_DIR SOURCE_DIR LIBDIR [C_FLAGS]
#   LIBDIR   CMAKE_INSTALL_LIBDIR of the build (lib, lib64, lib/x86_64-linux-gnu)
#   C_FLAGS  flags the consumer needs to link scree's libraries, such as the
#            sanitizer flags of a sanitizer build
set -eu
build=$1
src=$2
libdir=$3
flags=${4:-}
cmake=${CMAKE:-cmake}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/scree-consumer.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
prefix=$tmp/prefix

"$cmake" --install "$build" --prefix "$prefix" >"$tmp/install.log" ||
  { cat "$tmp/install.log"; exit 1; }

for with in cmake pkg-config; do
  echo "== consumer built with $with"
  # Nothing from the environment may point at another scree.
  env -u CMAKE_PREFIX_PATH PKG_CONFIG_PATH="$prefix/$libdir/pkgconfig" \
    "$cmake" -S "$src/tests/consumer" -B "$tmp/build-$with" \
      -DSCREE_CONSUMER_WITH="$with" -DCMAKE_PREFIX_PATH="$prefix" \
      -DCMAKE_C_FLAGS="$flags" -DCMAKE_EXE_LINKER_FLAGS="$flags" \
      -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF >"$tmp/configure-$with.log" ||
    { cat "$tmp/configure-$with.log"; exit 1; }
  "$cmake" --build "$tmp/build-$with" >"$tmp/build-$with.log" 2>&1 ||
    { cat "$tmp/build-$with.log"; exit 1; }
  # The installed libraries carry no run path, as in a distribution package.
  LD_LIBRARY_PATH="$prefix/$libdir" "$tmp/build-$with/scree_consumer" "$tmp/no-daemon.sock"
done
