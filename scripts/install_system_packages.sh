#!/usr/bin/env bash
# Installs the Debian/Ubuntu packages the tests drive for real: a PulseAudio server with
# no hardware (null sinks, a virtual microphone) reached through PortAudio's ALSA `pulse`
# device; a C/C++ compiler, make and cmake, which build the package's messages with its
# CMakeLists.txt; iproute2, which brings up loopback in the tests' private network
# namespace; chromium, the headless browser of the web page's test; espeak-ng, the two voices
# of `moshiface data synth`'s conversation corpus; and, when VENV's
# Python has no C headers, that Python's -dev package.
# Idempotent: does nothing when every package is already installed.
#
#   bash scripts/install_system_packages.sh [VENV]
#
# Runs apt-get as root, or through sudo when sudo needs no password. Otherwise it installs
# nothing and prints one line: the exact `sudo apt-get install ...` command to run first.
# MOSHIFACE_SYSTEM_PACKAGES replaces the package list (the tests use it to name a missing one).
set -euo pipefail

read -r -a PACKAGES <<< "${MOSHIFACE_SYSTEM_PACKAGES:-libportaudio2 libasound2-plugins pulseaudio pulseaudio-utils build-essential cmake iproute2 chromium espeak-ng}"
if [ "$#" -ge 1 ] && [ -x "$1/bin/python" ]; then
    include=$("$1/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
    if [ ! -f "$include/Python.h" ]; then
        PACKAGES+=("$("$1/bin/python" -c 'import sys; print(f"python{sys.version_info[0]}.{sys.version_info[1]}-dev")')")
    fi
fi

missing=()
for pkg in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
[ "${#missing[@]}" -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ]; then
    SUDO=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO=(sudo -n)
else
    echo "missing system packages; install them as root, then run make again:" \
        "sudo apt-get install --no-install-recommends ${missing[*]}" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -qq
"${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
