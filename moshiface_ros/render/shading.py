"""A shaded picture of a mesh: z-buffered, lit, coloured per vertex, in numpy alone.

Previews must let a person judge a face (is the mouth open, are the eyes closed), which a
flat-shaded, painter-sorted silhouette does not show well. This rasterises every
front-facing triangle into a depth buffer at the pixel centres, then colours each pixel
from its triangle's three vertex colours (Gouraud): per-vertex albedo times a Lambert term
with smooth (area-weighted) vertex normals plus ambient light. The view is orthographic,
from +z (FLAME's axes: y up, z toward the viewer, the subject's left at +x, so on the
picture the subject's left is on the right), optionally turned about the vertical axis.

Everything is vectorised over triangles and pixels: a 480 x 480 picture of a 10k-triangle
head takes about 20 ms on one free core, within a 25 fps preview's 40 ms.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import MoshifaceError

SKIN = (0.86, 0.67, 0.56)  # RGB albedo used when none is given
AMBIENT = 0.32
DIFFUSE = 0.78
_LIGHT = np.array([-0.35, 0.45, 1.0]) / np.linalg.norm([-0.35, 0.45, 1.0])  # from the upper left, in front


@dataclass
class Raster:
    """Which triangle covers each pixel (-1: none) and where in it (barycentric weights)."""

    triangle: np.ndarray     # H x W int64, index into the faces given
    barycentric: np.ndarray  # H x W x 3 float64 (zeros where no triangle)
    depth: np.ndarray        # H x W float64, larger is nearer (-inf where no triangle)


def view(vertices: np.ndarray, size: tuple[int, int], center: np.ndarray | None = None,
         scale: float | None = None, yaw_deg: float = 0.0) -> np.ndarray:
    """Screen coordinates (V x 3: column, row, depth toward the viewer, all in pixels) of ``vertices``.

    ``center`` (default: the middle of the bounding box) lands on the picture's centre;
    ``scale`` is pixels per metre (default: the mesh fills 90 % of the picture). A caller
    rendering a clip passes both, computed once, so the framing does not follow the motion."""
    width, height = size
    v = np.asarray(vertices, dtype=np.float64)
    lo, hi = v.min(0), v.max(0)
    c = (lo + hi) / 2 if center is None else np.asarray(center, dtype=np.float64)
    if scale is None:
        extent = np.maximum(hi - lo, 1e-9)
        scale = 0.9 * min(width / extent[0], height / extent[1])
    a = np.radians(yaw_deg)
    R = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    p = (v - c) @ R.T
    return np.stack([width / 2 + scale * p[:, 0], height / 2 - scale * p[:, 1], scale * p[:, 2]], axis=1)


def _pixels(tri: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Candidate pixels of each triangle's bounding box: (triangle index, column, row)."""
    lo = np.ceil(tri[:, :, :2].min(1)).astype(np.int64)
    hi = np.floor(tri[:, :, :2].max(1)).astype(np.int64)
    lo = np.maximum(lo, 0)
    hi = np.minimum(hi, [width - 1, height - 1])
    span = hi - lo + 1
    keep = np.flatnonzero((span > 0).all(1))
    span, lo = span[keep], lo[keep]
    counts = span[:, 0] * span[:, 1]
    which = np.repeat(np.arange(len(keep)), counts)
    offset = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
    cols = lo[which, 0] + offset % span[which, 0]
    rows = lo[which, 1] + offset // span[which, 0]
    return keep[which], cols, rows


def _planes(tri: np.ndarray, area: np.ndarray) -> np.ndarray:
    """Per triangle, (a, b, c) with value = a * column + b * row + c for l0, l1 and depth (T x 3 x 3)."""
    x, y, z = tri[:, :, 0], tri[:, :, 1], tri[:, :, 2]
    inv = 1.0 / area
    a0, b0 = (y[:, 1] - y[:, 2]) * inv, (x[:, 2] - x[:, 1]) * inv
    a1, b1 = (y[:, 2] - y[:, 0]) * inv, (x[:, 0] - x[:, 2]) * inv
    c0, c1 = -a0 * x[:, 2] - b0 * y[:, 2], -a1 * x[:, 2] - b1 * y[:, 2]
    dz0, dz1 = z[:, 0] - z[:, 2], z[:, 1] - z[:, 2]  # depth = l0 dz0 + l1 dz1 + z2
    planes = np.stack([np.stack([a0, b0, c0], 1), np.stack([a1, b1, c1], 1),
                       np.stack([a0 * dz0 + a1 * dz1, b0 * dz0 + b1 * dz1, c0 * dz0 + c1 * dz1 + z[:, 2]], 1)], 1)
    return planes.astype(np.float32)


def rasterize(screen: np.ndarray, faces: np.ndarray, size: tuple[int, int]) -> Raster:
    """Z-buffers the front-facing triangles of ``faces`` over ``screen`` (from ``view``)."""
    width, height = size
    faces = np.asarray(faces, dtype=np.int64)
    tri = screen[faces]  # T x 3 x 3
    e1, e2 = tri[:, 1, :2] - tri[:, 0, :2], tri[:, 2, :2] - tri[:, 0, :2]
    area = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]  # negative: counter-clockwise in y-up space
    front = np.flatnonzero(area < -1e-9)
    planes = _planes(tri[front], area[front])
    t, cols, rows = _pixels(tri[front], width, height)
    x, y = cols.astype(np.float32), rows.astype(np.float32)
    P = planes[t]  # N x 3 x 3
    l0 = P[:, 0, 0] * x + P[:, 0, 1] * y + P[:, 0, 2]
    l1 = P[:, 1, 0] * x + P[:, 1, 1] * y + P[:, 1, 2]
    inside = (l0 >= -2e-5) & (l1 >= -2e-5) & (l0 + l1 <= 1 + 2e-5)  # no cracks between neighbours
    t, l0, l1, P = t[inside], l0[inside], l1[inside], P[inside]
    x, y = x[inside], y[inside]
    pixel = rows[inside] * width + cols[inside]
    z = P[:, 2, 0] * x + P[:, 2, 1] * y + P[:, 2, 2]
    depth = np.full(width * height, -np.inf, dtype=np.float32)
    np.maximum.at(depth, pixel, z)
    win = z >= depth[pixel]
    triangle = np.full(width * height, -1, dtype=np.int64)
    bary = np.zeros((width * height, 3))
    triangle[pixel[win]] = front[t[win]]
    bary[pixel[win]] = np.stack([l0[win], l1[win], 1 - l0[win] - l1[win]], axis=1)
    return Raster(triangle.reshape(height, width), bary.reshape(height, width, 3),
                  depth.astype(np.float64).reshape(height, width))


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Unit normals (V x 3), the area-weighted mean of the adjacent triangles' normals."""
    tri = vertices[faces]
    n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    out = np.stack([np.bincount(faces.reshape(-1), np.repeat(n[:, c], 3), minlength=len(vertices))
                    for c in range(3)], axis=1)
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)


def _check(vertices: np.ndarray, faces: np.ndarray, albedo: np.ndarray | None, size: tuple[int, int]) -> None:
    if vertices.ndim != 2 or vertices.shape[1] != 3 or not np.all(np.isfinite(vertices)):
        raise MoshifaceError(f"shade_mesh needs finite V x 3 vertices, got shape {vertices.shape}")
    if faces.ndim != 2 or faces.shape[1] != 3 or (faces.size and (faces.min() < 0 or faces.max() >= len(vertices))):
        raise MoshifaceError(f"shade_mesh needs F x 3 faces indexing the {len(vertices)} vertices")
    if albedo is not None and albedo.shape != vertices.shape:
        raise MoshifaceError(f"the albedo must be V x 3 like the vertices ({vertices.shape}), got {albedo.shape}")
    if len(size) != 2 or min(size) < 1:
        raise MoshifaceError(f"the picture size must be (width, height) in pixels, got {size}")


def shade_mesh(vertices: np.ndarray, faces: np.ndarray, albedo: np.ndarray | None, size: tuple[int, int], *,
               center: np.ndarray | None = None, scale: float | None = None, yaw_deg: float = 0.0,
               background: tuple[int, int, int] = (32, 30, 28)) -> np.ndarray:
    """An H x W x 3 uint8 BGR picture of the mesh (``size`` is (width, height); ``albedo``
    V x 3 RGB in 0..1, or None for a skin tone; ``center``/``scale``/``yaw_deg`` as in ``view``)."""
    vertices = np.asarray(vertices, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64)
    albedo = None if albedo is None else np.asarray(albedo, dtype=np.float64)
    _check(vertices, faces, albedo, size)
    width, height = int(size[0]), int(size[1])
    screen = view(vertices, (width, height), center, scale, yaw_deg)
    raster = rasterize(screen, faces, (width, height))
    normals = vertex_normals(screen * [1.0, -1.0, 1.0], faces)  # y up again: a right-handed frame
    light = AMBIENT + DIFFUSE * np.clip(normals @ _LIGHT, 0.0, 1.0)
    base = np.broadcast_to(SKIN, vertices.shape) if albedo is None else albedo
    colour = np.clip(base * light[:, None], 0.0, 1.0)[:, ::-1] * 255.0  # RGB -> BGR
    image = np.empty((height * width, 3), dtype=np.uint8)
    image[:] = background
    hit = np.flatnonzero(raster.triangle.reshape(-1) >= 0)
    corners = faces[raster.triangle.reshape(-1)[hit]]  # N x 3
    bary = raster.barycentric.reshape(-1, 3)[hit].astype(np.float32)
    c = colour.astype(np.float32)
    pixel = bary[:, 0:1] * c[corners[:, 0]] + bary[:, 1:2] * c[corners[:, 1]] + bary[:, 2:3] * c[corners[:, 2]]
    image[hit] = np.clip(pixel + 0.5, 0, 255).astype(np.uint8)
    return image.reshape(height, width, 3)
