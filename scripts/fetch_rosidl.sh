#!/usr/bin/env bash
# Makes rosidl_adapter / rosidl_parser (ROS 2's own .msg -> .idl tools) importable from a
# virtual environment without installing ROS, so the tests can validate msg/*.msg exactly
# as `colcon build` would.
#
#   bash scripts/fetch_rosidl.sh VENV
#
# They come from the Debian/Ubuntu package `python3-rosidl` (pure Python; it also needs
# `lark` and `empy<4`, which requirements/test.txt installs into the venv). The package is
# downloaded, not installed: `apt-get download` + `dpkg -x` unpack it into VENV/rosidl, and
# a .pth file in the venv's site-packages points at it, so the system stays untouched.
# Idempotent: exits at once when the venv can already import rosidl_adapter.
set -euo pipefail

if [ "$#" -ne 1 ]; then
    echo "usage: $0 VENV" >&2
    exit 2
fi

PKG=python3-rosidl
SYSDIST=/usr/lib/python3/dist-packages

fail() {
    echo "fetch_rosidl.sh: cannot get rosidl_adapter ($1): install '$PKG' from Debian/Ubuntu (sudo apt-get install $PKG), then re-run this script" >&2
    exit 1
}

[ -x "$1/bin/python" ] || {
    echo "fetch_rosidl.sh: $1/bin/python not found: create the venv first (make install)" >&2
    exit 1
}
VENV="$(cd "$1" && pwd)"
PY="$VENV/bin/python"
DIST="$VENV/rosidl/usr/lib/python3/dist-packages"
IMPORTS="import rosidl_adapter.parser, rosidl_adapter.msg, rosidl_parser.parser"

if "$PY" -c "$IMPORTS" 2>/dev/null; then
    exit 0
fi

# Runs a command as root: directly when we are root, through passwordless sudo where that
# exists (CI runners), otherwise not at all.
as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        sudo -n "$@"
    else
        return 1
    fi
}

# python3-rosidl already installed system-wide: copy just its modules (pointing the venv
# at the whole system dist-packages would leak every other system package into it).
from_system() {
    rm -rf "$VENV/rosidl"
    mkdir -p "$DIST"
    cp -r "$SYSDIST"/rosidl_* "$DIST"/
    SOURCE="the system's $PKG"
}

# apt-get download + dpkg -x into VENV/rosidl.
from_apt() {
    command -v apt-get >/dev/null 2>&1 && command -v dpkg >/dev/null 2>&1 \
        || fail "apt-get/dpkg not found"

    local tmp deb
    tmp="$(mktemp -d)"
    # shellcheck disable=SC2064
    trap "rm -rf '$tmp'" EXIT

    download() {
        # Run from the temp dir (apt-get download writes into the current directory). As
        # root apt prints a harmless "Download is performed unsandboxed" warning because
        # its _apt user cannot write there; that line is filtered out.
        (cd "$tmp" && apt-get download "$PKG" 2>&1 | grep -v "unsandboxed" >&2) || true
        compgen -G "$tmp/${PKG}_*.deb" >/dev/null
    }

    if ! compgen -G "/var/lib/apt/lists/*_Packages*" >/dev/null; then
        echo "fetch_rosidl.sh: apt package lists are empty; running apt-get update" >&2
        as_root apt-get update -qq >&2 \
            || echo "fetch_rosidl.sh: apt-get update failed or needs root (sudo apt-get update)" >&2
    fi
    if ! download; then
        # Stale lists give 404s: refresh once (when we may) and retry.
        if as_root apt-get update -qq >&2; then
            download || true
        fi
    fi

    deb="$(compgen -G "$tmp/${PKG}_*.deb" | head -n 1 || true)"
    [ -n "$deb" ] || fail "apt-get download $PKG failed"

    rm -rf "$VENV/rosidl"
    mkdir -p "$VENV/rosidl"
    dpkg -x "$deb" "$VENV/rosidl"
    [ -d "$DIST/rosidl_adapter" ] || fail "unexpected layout of $(basename "$deb")"
    SOURCE="$(basename "$deb")"
}

if [ -d "$SYSDIST/rosidl_adapter" ] && [ -d "$SYSDIST/rosidl_parser" ]; then
    from_system
else
    from_apt
fi

SITE="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
echo "$DIST" > "$SITE/moshiface_rosidl.pth"

if ! "$PY" -c "$IMPORTS" 2>/dev/null; then
    echo "fetch_rosidl.sh: unpacked $SOURCE into $VENV/rosidl, but the import still fails:" >&2
    "$PY" -c "$IMPORTS" >&2 || true
    echo "fetch_rosidl.sh: rosidl needs 'lark' and 'empy<4' in the venv: $PY -m pip install -r requirements/test.txt" >&2
    exit 1
fi
echo "fetch_rosidl.sh: rosidl_adapter from $SOURCE is importable in $VENV"
