"""moshiface_ros: full-duplex voice and face for social robots (Moshi-Face on ROS 2).

This file imports nothing on purpose: in a ROS install the generated message package
``moshiface_ros.msg`` lives in the same Python package, and importing submodules here
would drag torch into every process that only wants the messages.
"""

__version__ = "0.1.0"
