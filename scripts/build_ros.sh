#!/usr/bin/env bash
# Builds this package with its own CMakeLists.txt (messages, node launchers, launch and config
# files, the Python code) into an install prefix outside the venv, and writes PREFIX/setup.sh,
# the environment that runs its nodes and tests under ROS 2.
#
#   bash scripts/build_ros.sh VENV PREFIX BUILD_DIR [ROS_TOOLS]
#
# Run it after every change: configuring happens once, the build is incremental, and the
# install copies the current moshiface_ros/ into PREFIX (and removes files that no longer
# exist in the source), so what runs under ROS is always the working tree. A prefix other than
# the venv, because `pip install -e .` into the venv would delete a CMake install there.
#
# ROS_TOOLS: a directory whose install-launch-tools.sh adds `ros2 launch/run/topic/param/node`
# and composition_interfaces (launch_ros needs it); used only when those are missing.
set -euo pipefail

[ "$#" -ge 3 ] || { echo "usage: $0 VENV PREFIX BUILD_DIR [ROS_TOOLS]" >&2; exit 2; }
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
VENV=$(cd "$1" && pwd)
mkdir -p "$2" "$3"
PREFIX=$(cd "$2" && pwd)
BUILD=$(cd "$3" && pwd)
ROS_TOOLS=${4:-}
PY=$VENV/bin/python
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 2)}

# One build at a time per build directory (a second waits).
exec 9>"$BUILD/.lock"
flock 9

# The wheels' CMake exports: re-pointed after any pip reinstall (no-op when nothing changed).
if [ -d "$VENV/share/ament_cmake" ]; then
    "$PY" "$HERE/fix_ros_cmake_exports.py" "$VENV"
fi

export AMENT_PREFIX_PATH=$PREFIX:$VENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}
export CMAKE_PREFIX_PATH=$PREFIX:$VENV${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}
export PATH=$VENV/bin:$PATH

run_logged() {  # run_logged LOG CMD...: quiet unless it fails
    local log=$1; shift
    "$@" >"$log" 2>&1 || { tail -40 "$log" >&2; echo "build_ros.sh: failed: $* (log: $log)" >&2; exit 1; }
}

# ----------------------------------------------------------------- launch and ros2 tools
launch_tools_ok() {
    PYTHONPATH="$(ls -d "$PREFIX"/lib/python3*/site-packages 2>/dev/null | tr '\n' ':')${PYTHONPATH:-}" \
        "$PY" -c "import launch_ros.actions, ros2cli, ros2launch, ros2topic, ros2param, composition_interfaces.srv" \
        2>/dev/null
}
if [ -n "$ROS_TOOLS" ] && ! launch_tools_ok; then
    [ -f "$ROS_TOOLS/install-launch-tools.sh" ] \
        || { echo "build_ros.sh: ROS_TOOLS=$ROS_TOOLS has no install-launch-tools.sh" >&2; exit 1; }
    t0=$SECONDS
    bash "$ROS_TOOLS/install-launch-tools.sh" "$VENV" "$PREFIX"
    launch_tools_ok || { echo "build_ros.sh: launch tools installed but launch_ros does not import" >&2; exit 1; }
    echo "build_ros.sh: launch tools and composition_interfaces installed in $((SECONDS - t0)) s"
fi

# ----------------------------------------------------------------- this package
# CMake builds a copy of the working tree: it refuses exported include directories that lie
# inside the source directory, and a venv inside the checkout is one. Modification times are
# kept, so an unchanged file is neither regenerated nor reinstalled.
t0=$SECONDS
SRC=$BUILD/src
rm -rf "$SRC" && mkdir -p "$SRC"
if git -C "$REPO" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    (cd "$REPO" && git ls-files -z --cached --others --exclude-standard \
        | xargs -0 sh -c 'for f; do [ -e "$f" ] && printf "%s\0" "$f"; done' sh \
        | xargs -0 cp -p --parents -t "$SRC")
else
    (cd "$REPO" && find . \( -name .git -o -name .venv -o -name build -o -name __pycache__ \) -prune \
        -o -type f -print0 | xargs -0 cp -p --parents -t "$SRC")
fi
# three.js for the web page: installed by `npm ci` into web/node_modules (ignored by git, so
# not in the copy above); CMakeLists.txt installs these files with the page when they exist.
for f in web/node_modules/three/build/three.module.js web/node_modules/three/build/three.core.js \
         web/node_modules/three/LICENSE; do
    if [ -f "$REPO/$f" ]; then (cd "$REPO" && cp -p --parents -t "$SRC" "$f"); fi
done
if [ ! -f "$BUILD/CMakeCache.txt" ]; then
    run_logged "$BUILD/configure.log" cmake -S "$SRC" -B "$BUILD" -DCMAKE_INSTALL_PREFIX="$PREFIX" \
        -DPython3_EXECUTABLE="$PY" -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF
fi
run_logged "$BUILD/build.log" cmake --build "$BUILD" -j "$JOBS"
run_logged "$BUILD/install.log" cmake --install "$BUILD"

# Files of the installed Python package that this install did not write are left over from
# source files since moved or deleted: remove them, so that nothing stale stays importable.
SITE=$(ls -d "$PREFIX"/lib/python3*/site-packages | head -n 1)
find "$SITE/moshiface_ros" -type f -not -path '*/__pycache__/*' | sort >"$BUILD/installed-files.txt"
sort "$BUILD/install_manifest.txt" | comm -23 "$BUILD/installed-files.txt" - | while IFS= read -r stale; do
    rm -f -- "$stale"
done
find "$SITE/moshiface_ros" -depth -type d -empty -delete
echo "build_ros.sh: moshiface_ros built and installed in $PREFIX ($((SECONDS - t0)) s)"

# ----------------------------------------------------------------- the environment
bash "$HERE/ros_env.sh" "$VENV" "$PREFIX" >"$PREFIX/setup.sh.tmp"
mv -f "$PREFIX/setup.sh.tmp" "$PREFIX/setup.sh"
