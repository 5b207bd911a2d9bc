"""pip install of the ROS-free core and the `moshiface` command.

torch and moshi are not listed: moshi 0.2.13 pins torch<2.10, and letting pip resolve it
replaces an installed torch with a multi-gigabyte CUDA build. Install torch first, then
``pip install --no-deps moshi==0.2.13``, then this package (``make`` does all of it).

The message definitions live in ``msg/`` at the repository root (the ROS 2 package
layout); a built wheel carries a copy under ``moshiface_ros/msg_definitions`` so that the
session recorder can register the types without ROS.
"""

import shutil
from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent


def _requirements() -> list[str]:
    lines = (HERE / "requirements" / "runtime.txt").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


# The browser page and the part of three.js it loads (web/node_modules comes from `npm ci`).
WEB_FILES = ("*.html", "*.js", "*.css")
THREE_FILES = ("node_modules/three/build/three.module.js", "node_modules/three/build/three.core.js",
               "node_modules/three/LICENSE")


class BuildWithMessages(build_py):
    """Copies msg/*.msg and the web page into the built package (a wheel has no
    repository root)."""

    def run(self) -> None:
        super().run()
        target = Path(self.build_lib) / "moshiface_ros" / "msg_definitions"
        target.mkdir(parents=True, exist_ok=True)
        for msg in sorted((HERE / "msg").glob("*.msg")):
            shutil.copy2(msg, target / msg.name)
        self._copy_web(Path(self.build_lib) / "moshiface_ros" / "web")

    @staticmethod
    def _copy_web(target: Path) -> None:
        web = HERE / "web"
        files = [path for pattern in WEB_FILES for path in sorted(web.glob(pattern))]
        files += [web / name for name in THREE_FILES if (web / name).is_file()]
        for path in files:
            destination = target / path.relative_to(web)
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, destination)


setup(
    name="moshiface_ros",
    version="0.1.0",
    description="Full-duplex voice and face for social robots: Moshi-Face on ROS 2",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["moshiface_ros", "moshiface_ros.*"]),
    install_requires=_requirements(),
    cmdclass={"build_py": BuildWithMessages},
    entry_points={"console_scripts": ["moshiface=moshiface_ros.cli:main"]},
)
