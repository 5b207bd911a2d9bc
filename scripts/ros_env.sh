#!/usr/bin/env bash
# Prints the shell lines that put this package's ROS 2 environment in place (build_ros.sh
# writes them to PREFIX/setup.sh):
#
#   bash scripts/ros_env.sh VENV PREFIX > PREFIX/setup.sh;  . PREFIX/setup.sh
#
# AMENT_PREFIX_PATH: ament_index (launch files, `ros2 run`, default head file) finds the
#   package in PREFIX and the ROS wheels in VENV.
# PYTHONPATH: PREFIX's site-packages first, where moshiface_ros sits with its generated msg/
#   (the source tree has none; it must not shadow the installed package).
# LD_LIBRARY_PATH: the package's generated type support libraries (the wheels add their own).
# PATH: the venv first; the installed node launchers start with `#!/usr/bin/env python3`.
# RMW_IMPLEMENTATION, ROS_AUTOMATIC_DISCOVERY_RANGE, FASTRTPS_DEFAULT_PROFILES_FILE: Fast DDS,
#   discovering and sending on 127.0.0.1 only (config/fastdds_localhost.xml).
set -euo pipefail
[ "$#" -eq 2 ] || { echo "usage: $0 VENV PREFIX" >&2; exit 2; }
VENV=$(cd "$1" && pwd)
PREFIX=$(cd "$2" && pwd)
SITE=$(ls -d "$PREFIX"/lib/python3*/site-packages 2>/dev/null | head -n 1)
[ -n "$SITE" ] || { echo "ros_env.sh: $PREFIX has no lib/python3*/site-packages: build first (scripts/build_ros.sh)" >&2; exit 1; }
cat <<ENV
# moshiface_ros under ROS 2: source this file (written by scripts/build_ros.sh).
export AMENT_PREFIX_PATH="$PREFIX:$VENV\${AMENT_PREFIX_PATH:+:\$AMENT_PREFIX_PATH}"
export CMAKE_PREFIX_PATH="$PREFIX:$VENV\${CMAKE_PREFIX_PATH:+:\$CMAKE_PREFIX_PATH}"
export PYTHONPATH="$SITE\${PYTHONPATH:+:\$PYTHONPATH}"
export LD_LIBRARY_PATH="$PREFIX/lib\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
export PATH="$VENV/bin:\$PATH"
export RMW_IMPLEMENTATION=rmw_fastrtps_cpp
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
export FASTRTPS_DEFAULT_PROFILES_FILE="$PREFIX/share/moshiface_ros/config/fastdds_localhost.xml"
ENV
