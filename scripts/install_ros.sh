#!/usr/bin/env bash
# Makes ROS 2 Jazzy (rclpy over Fast DDS, the message packages, the rosidl build tools)
# available to a venv, so that the package builds with its own CMakeLists.txt and its nodes
# run under real ROS.
#
#   bash scripts/install_ros.sh VENV
#
# When a ROS 2 installation is already sourced (AMENT_PREFIX_PATH is set and the venv's
# Python imports rclpy from outside the venv), that one is used and nothing is installed.
# Otherwise the pinned ros-jazzy-* wheels of requirements/ros.txt go into the venv, and their
# exported CMake targets are pointed at the venv's headers (scripts/fix_ros_cmake_exports.py,
# which `make` also re-runs on every build since any pip reinstall undoes it).
set -euo pipefail

[ "$#" -eq 1 ] || { echo "usage: $0 VENV" >&2; exit 2; }
[ -x "$1/bin/python" ] || { echo "install_ros.sh: $1/bin/python not found: create the venv first (make install)" >&2; exit 1; }
VENV=$(cd "$1" && pwd)
PY=$VENV/bin/python
HERE=$(cd "$(dirname "$0")" && pwd)
PIP=("$PY" -m pip --disable-pip-version-check -q)

if [ -n "${AMENT_PREFIX_PATH:-}" ]; then
    where=$("$PY" -c 'import rclpy, os; print(os.path.dirname(rclpy.__file__))' 2>/dev/null || true)
    if [ -n "$where" ] && [ "${where#"$VENV"/}" = "$where" ]; then
        echo "install_ros.sh: using the sourced ROS 2 (rclpy from $where); no wheels installed"
        exit 0
    fi
fi

for tool in cmake c++ make; do
    command -v "$tool" >/dev/null || {
        echo "install_ros.sh: '$tool' not found: install build-essential and cmake (scripts/install_system_packages.sh)" >&2
        exit 1
    }
done

t0=$SECONDS
"${PIP[@]}" install --no-warn-conflicts -r "$HERE/../requirements/ros.txt"

# ros-jazzy-rosidl-parser pulls lark-parser 0.12, which installs into the same `lark` folder
# as lark 1.x (requirements/test.txt) and leaves a mix of both. rosidl_parser works with
# lark 1.x: keep that one, whole.
if "$PY" -m pip show -q lark-parser >/dev/null 2>&1; then
    "${PIP[@]}" uninstall -y lark-parser
    "${PIP[@]}" install --force-reinstall --no-deps "$(grep -E '^lark[<>=]' "$HERE/../requirements/test.txt")"
fi

"$PY" "$HERE/fix_ros_cmake_exports.py" "$VENV"
"$PY" -c "import rclpy, rosidl_adapter, lark; assert lark.__version__ >= '1'" \
    || { echo "install_ros.sh: the ROS 2 wheels are installed but do not import (see above)" >&2; exit 1; }
echo "install_ros.sh: ROS 2 Jazzy wheels installed in $VENV in $((SECONDS - t0)) s"
