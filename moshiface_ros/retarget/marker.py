"""Mesh data for an rviz2 ``visualization_msgs/Marker`` (TRIANGLE_LIST).

A TRIANGLE_LIST marker is a flat list of points, three per triangle; rviz2 draws it
with one colour (or a colour per vertex). The face's triangles come from the rig or
mesh file (``faces``); this module turns a frame's vertices into that list, ROS-free,
so the node only copies numbers into ``geometry_msgs/Point``s.
"""

from __future__ import annotations

import numpy as np


def triangle_list(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(3F) x 3 float64 points: the corners of every triangle, in order."""
    vertices = np.asarray(vertices, np.float64).reshape(-1, 3)
    faces = np.asarray(faces, np.int64).reshape(-1, 3)
    if faces.size and (faces.min() < 0 or faces.max() >= len(vertices)):
        raise ValueError(f"faces refer to vertex {int(faces.max())} of a {len(vertices)}-vertex mesh")
    return vertices[faces.reshape(-1)]


def decimate_faces(faces: np.ndarray, max_triangles: int) -> np.ndarray:
    """At most ``max_triangles`` evenly spread triangles (rviz2 and rclpy are slow with
    tens of thousands of points at 25 Hz); all of them when 0."""
    faces = np.asarray(faces, np.int64).reshape(-1, 3)
    if max_triangles <= 0 or len(faces) <= max_triangles:
        return faces
    keep = np.linspace(0, len(faces) - 1, max_triangles).round().astype(np.int64)
    return faces[keep]
