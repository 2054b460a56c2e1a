#!/usr/bin/env bash
# Build msg/ with rosidl against the ROS wheels in the venv and install the generated
# types into the venv itself (its lib/ is already on the wheels' library path, so
# `from lanesad_ros.msg import LaneArray` works with no environment to source).
# Usage: tools/build_msgs.sh VENV_DIR
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
venv=$(cd "${1:-$repo/.venv}" && pwd)
src="$repo/build/msg-src"
bld="$repo/build/msgs"

# CMake refuses exported include folders inside the source tree, and the venv's NumPy
# headers live in the repo's .venv: configure from a staged copy of the package instead.
rm -rf "$src" && mkdir -p "$src"
cp -r "$repo/package.xml" "$repo/CMakeLists.txt" "$repo/msg" "$repo/launch" "$repo/config" "$repo/demo" "$src/"

export AMENT_PREFIX_PATH="$venv"
"$venv/bin/cmake" -S "$src" -B "$bld" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$venv" -DCMAKE_INSTALL_PREFIX="$venv" \
  -DPython3_EXECUTABLE="$venv/bin/python" \
  -DLANESAD_INSTALL_PYTHON=OFF -DBUILD_TESTING=OFF >"$repo/build/msgs-configure.log"
"$venv/bin/cmake" --build "$bld" -j"$(nproc)" >"$repo/build/msgs-build.log"
"$venv/bin/cmake" --install "$bld" >"$repo/build/msgs-install.log"

# rosidl writes an empty lanesad_ros/__init__.py beside the generated msg/ module; it would
# shadow the real package. Without it that folder is a namespace portion that the real
# package's pkgutil.extend_path picks up, whatever the order on sys.path.
rm -f "$venv"/lib/python3*/site-packages/lanesad_ros/__init__.py
echo "build_msgs: lanesad_ros messages installed into $venv"
