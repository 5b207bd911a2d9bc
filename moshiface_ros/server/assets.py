"""Where the page's static files are, in each way the package can be installed.

The page (``web/``) and three.js (``web/node_modules/three``, put there by ``npm ci``) sit
at the repository root in a source checkout or an editable install; a wheel carries them
inside the package (``moshiface_ros/web``); the ROS install puts them in the package's
share directory. The first of these that holds the page wins, so ``moshiface serve`` and
the ``web_head`` node serve the same files wherever they run.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import MoshifaceError

PAGE = "index.html"
THREE_MODULE = Path("node_modules") / "three" / "build" / "three.module.js"
WEB_DIR_ENV = "MOSHIFACE_WEB_DIR"


def candidate_dirs() -> list[Path]:
    """Every place the page may be, in the order they are tried."""
    package = Path(__file__).resolve().parents[1]
    found = [Path(os.environ[WEB_DIR_ENV])] if os.environ.get(WEB_DIR_ENV) else []
    found += [package / "web", package.parent / "web"]
    # ROS: <prefix>/lib/pythonX.Y/site-packages/moshiface_ros -> <prefix>/share/moshiface_ros/web
    if package.parent.name in ("site-packages", "dist-packages") and len(package.parents) > 3:
        found.append(package.parents[3] / "share" / "moshiface_ros" / "web")
    return found


def web_dir() -> Path:
    """The directory holding the page, with three.js installed (a one-line error if not)."""
    pages = [path for path in candidate_dirs() if (path / PAGE).is_file()]
    if not pages:
        raise MoshifaceError(f"the web page is not installed (looked in {', '.join(map(str, candidate_dirs()))})")
    for path in pages:
        if (path / THREE_MODULE).is_file():
            return path
    raise MoshifaceError(f"three.js is missing from {pages[0] / 'node_modules'}: run `make install` "
                         "(or `npm ci` in web/) to fetch it")


def three_dir(web: Path) -> Path:
    """three.js's build directory (``three.module.js`` and its core)."""
    return web / THREE_MODULE.parent
