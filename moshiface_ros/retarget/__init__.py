"""Retargeting: the robot's FLAME face (and, without one, its voice) to a real head.

Every head is different, so everything about a head is configuration (a head file, see
``head.py``): a blendshape rig solved on the FLAME topology (``solver.py``) or
interpretable features measured on the mesh (``features.py``), actuators with limits
that nothing can exceed (``actuators.py``), a speech-driven fallback (``fallback.py``),
Unreal Live Link Face packets (``livelink.py``) and rviz mesh data (``marker.py``).
``retargeter.HeadRetargeter`` combines them behind a small step API. Nothing here
imports ROS.
"""
