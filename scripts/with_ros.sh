#!/usr/bin/env bash
# Runs a command in this package's ROS 2 environment, with DDS kept on this machine.
#
#   bash scripts/with_ros.sh PREFIX COMMAND [ARGS...]
#   bash scripts/with_ros.sh build/ros/install pytest -q test/test_ros_launch.py
#
# PREFIX is where scripts/build_ros.sh installed the package (its setup.sh is sourced). As
# root, the command runs in a private network namespace (`unshare -n`) where only the
# loopback interface exists, so no discovery or data can leave through a real interface;
# PulseAudio's unix sockets and servers on 127.0.0.1 work there as usual. Without root it
# runs in place, on a ROS domain of its own so that concurrent runs do not see each other;
# Fast DDS is held to 127.0.0.1 by the profile and ROS_AUTOMATIC_DISCOVERY_RANGE either way.
set -euo pipefail

[ "$#" -ge 2 ] || { echo "usage: $0 PREFIX COMMAND [ARGS...]" >&2; exit 2; }
PREFIX=$1; shift
[ -f "$PREFIX/setup.sh" ] || { echo "with_ros.sh: $PREFIX/setup.sh not found: build first (scripts/build_ros.sh)" >&2; exit 1; }
# shellcheck disable=SC1091
. "$PREFIX/setup.sh"

if [ "$(id -u)" -eq 0 ] && command -v unshare >/dev/null && command -v ip >/dev/null \
        && unshare -n true 2>/dev/null; then
    export MOSHIFACE_PRIVATE_NETWORK=1
    exec unshare -n sh -c 'ip link set lo up && exec "$@"' sh "$@"
fi
if [ "$(id -u)" -eq 0 ]; then
    echo "with_ros.sh: cannot create a network namespace (unshare -n, ip from iproute2): DDS held to 127.0.0.1 by its profile only" >&2
fi
export MOSHIFACE_PRIVATE_NETWORK=0
export ROS_DOMAIN_ID=${ROS_DOMAIN_ID:-$(( $$ % 100 + 1 ))}
exec "$@"
