#!/usr/bin/env bash
# Builds the Python package (scree._native and the package's own screed and
# screectl) on the GPU machine, for that machine's python3, where nothing can
# be installed from a registry: the Debian dev packages scree builds against
# travel as .deb files and are unpacked into a private root.
#
#   bench/gpu_pybuild.sh DEBS_DIR PYSITE
#
# DEBS_DIR holds the .deb files, fetched on the build machine with
#   apt-get download libuv1-dev libuv1 libprotobuf-c-dev libprotobuf-c1 \
#     protobuf-c-compiler libprotoc32 libprotobuf32 pkgconf pkgconf-bin \
#     libpkgconf3 libucx-dev libucx0 libssl-dev
# PYSITE is where `pip install --target` puts the package (then run the
# Python tests with PYTHONPATH=PYSITE, as bench/gpu_all.sh does).
set -euo pipefail
debs=$(cd "${1:?debs dir}" && pwd)
site=${2:?python site}
root=$(mktemp -d /tmp/scree-debroot.XXXXXX)
for d in "$debs"/*.deb; do dpkg -x "$d" "$root"; done
multi=usr/lib/x86_64-linux-gnu
# pkg-config answers with paths inside the private root.
export PKG_CONFIG_SYSROOT_DIR=$root
export PKG_CONFIG_PATH=$root/$multi/pkgconfig:$root/usr/share/pkgconfig
export PKG_CONFIG=$root/usr/bin/pkgconf
export CPATH=$root/usr/include:$root/usr/include/x86_64-linux-gnu
export LIBRARY_PATH=$root/$multi
export LD_LIBRARY_PATH=$root/$multi${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export PATH=$root/usr/bin:$PATH
# The unversioned .so links of the -dev packages point at the runtime
# packages' files, which are unpacked beside them.
python3 -m pip install -q --no-deps --no-build-isolation --no-cache-dir --target "$site" \
  -C cmake.define.PKG_CONFIG_EXECUTABLE="$PKG_CONFIG" ./client/python
echo "built into $site (private root $root; keep LD_LIBRARY_PATH=$root/$multi when running)"
echo "$root/$multi" >"$site/.scree-libdir"
