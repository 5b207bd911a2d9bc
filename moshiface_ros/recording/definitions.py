"""Our message definitions as text, for tools that need no ROS install (rosbags).

The ``.msg`` files live in ``msg/`` at the package root. A wheel carries a copy in
``moshiface_ros/msg_definitions`` (see setup.py); a ROS install has them in the
package's share directory. We look in that order, so the recorder embeds exactly the
definitions the nodes were built from.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

from ..messages.convert import MSG_TYPES, PACKAGE

_HERE = Path(__file__).resolve().parent.parent


def _candidate_dirs() -> list[Path]:
    dirs = [_HERE / "msg_definitions", _HERE.parent / "msg"]
    try:
        from ament_index_python.packages import get_package_share_directory

        dirs.append(Path(get_package_share_directory(PACKAGE)) / "msg")
    except Exception:  # no ROS, or the package is not installed in this ROS workspace
        pass
    return dirs


@lru_cache(maxsize=1)
def definitions_dir() -> Path:
    """The directory holding every one of our ``.msg`` files."""
    names = {name.rsplit("/", 1)[-1] for name in MSG_TYPES.values()}
    for directory in _candidate_dirs():
        if all((directory / f"{name}.msg").is_file() for name in names):
            return directory
    raise FileNotFoundError(
        f"cannot find the {PACKAGE} .msg definitions (looked in "
        f"{', '.join(str(d) for d in _candidate_dirs())})"
    )


def message_definitions() -> dict[str, str]:
    """ROS type name -> ``.msg`` text for each of our message types."""
    directory = definitions_dir()
    return {
        type_name: (directory / f"{type_name.rsplit('/', 1)[-1]}.msg").read_text()
        for type_name in MSG_TYPES.values()
    }


def make_typestore() -> Typestore:
    """A rosbags typestore for ROS 2 Humble extended with our message types."""
    typestore = get_typestore(Stores.ROS2_HUMBLE)
    types: dict = {}
    for type_name, text in message_definitions().items():
        types.update(get_types_from_msg(text, type_name))
    typestore.register(types)
    return typestore
