"""Linear blend skinning for FLAME, in numpy (tracking, one frame at a time) and torch
(batches, gradients, GPU).

FLAME poses five joints (root, neck, jaw, left eye, right eye; parents -1, 0, 1, 1, 1) with
axis-angle rotations. A posed vertex is the weighted sum over joints of the joint's world
transform applied to the shaped, pose-corrected rest vertex:

    v_rest = template + shapedirs @ [shape, expression]              (identity + expression)
    J      = J_regressor @ v_rest                                    (joints follow the shape)
    v_rest += posedirs @ concat_j>0 (R_j - I).ravel()                (pose correctives)
    v      = sum_j weights[:, j] * G_j @ [v_rest, 1] + translation

where ``G_j`` is the chain of parent transforms rotating about each joint's rest position.
Both implementations follow these formulas literally and are checked against each other.
"""

from __future__ import annotations

import numpy as np

# -- numpy ------------------------------------------------------------------------------


def rodrigues(axis_angle: np.ndarray) -> np.ndarray:
    """(..., 3) axis-angle -> (..., 3, 3) rotation matrices."""
    r = np.asarray(axis_angle, dtype=np.float64)
    theta = np.linalg.norm(r, axis=-1, keepdims=True)
    small = theta < 1e-8
    k = r / np.where(small, 1.0, theta)
    kx, ky, kz = k[..., 0], k[..., 1], k[..., 2]
    zero = np.zeros_like(kx)
    K = np.stack([zero, -kz, ky, kz, zero, -kx, -ky, kx, zero], axis=-1).reshape(*r.shape[:-1], 3, 3)
    s = np.sin(theta)[..., None]
    c = np.cos(theta)[..., None]
    eye = np.broadcast_to(np.eye(3), K.shape)
    R = eye + s * K + (1 - c) * (K @ K)
    # Near zero, first order: I + [r]x (exact enough below 1e-8 rad).
    Kr = np.stack([zero, -r[..., 2], r[..., 1], r[..., 2], zero, -r[..., 0], -r[..., 1], r[..., 0], zero],
                  axis=-1).reshape(K.shape)
    return np.where(small[..., None], eye + Kr, R)


def rotation_to_axis_angle(R: np.ndarray) -> np.ndarray:
    """(3, 3) rotation -> axis-angle (3,), stable near 0 and pi."""
    R = np.asarray(R, dtype=np.float64)
    cos = np.clip((np.trace(R) - 1) / 2, -1.0, 1.0)
    theta = np.arccos(cos)
    w = np.array([R[2, 1] - R[1, 2], R[0, 2] - R[2, 0], R[1, 0] - R[0, 1]])
    if theta < 1e-6:
        return w / 2
    if np.pi - theta < 1e-4:
        # axis from the diagonal: R + I = 2 k k^T near pi
        k = np.sqrt(np.maximum((np.diag(R) + 1) / 2, 0))
        i = int(np.argmax(k))
        k = (R[i] + np.eye(3)[i]) / (2 * k[i])
        k /= np.linalg.norm(k)
        return k * theta
    return w * theta / (2 * np.sin(theta))


def pose_feature(rotations: np.ndarray) -> np.ndarray:
    """(J, 3, 3) joint rotations -> FLAME's pose-corrective input, (R_j - I) for joints 1.. flattened."""
    return (rotations[1:] - np.eye(3)).reshape(-1)


def world_transforms(rotations: np.ndarray, joints: np.ndarray, parents: np.ndarray) -> np.ndarray:
    """(J, 4, 4) transforms that map rest positions to posed positions for each joint."""
    n = len(parents)
    chain = np.zeros((n, 4, 4))
    for j in range(n):
        local = np.eye(4)
        local[:3, :3] = rotations[j]
        local[:3, 3] = joints[j] - (joints[parents[j]] if parents[j] >= 0 else 0)
        chain[j] = local if parents[j] < 0 else chain[parents[j]] @ local
    # Remove the rest position: G_j v = chain_j [v - J_j; 1]
    result = chain.copy()
    result[:, :3, 3] -= np.einsum("jab,jb->ja", chain[:, :3, :3], joints)
    return result


def lbs(v_shaped: np.ndarray, joints: np.ndarray, rotations: np.ndarray, posedirs: np.ndarray,
        weights: np.ndarray, parents: np.ndarray, translation: np.ndarray | None = None) -> np.ndarray:
    """Poses one mesh.

    v_shaped (V, 3) rest vertices with shape and expression; joints (J, 3) their joints;
    rotations (J, 3, 3); posedirs (V, 3, P) or None; weights (V, J). Returns (V, 3).
    """
    v = v_shaped
    if posedirs is not None and posedirs.shape[-1]:
        v = v + posedirs @ pose_feature(rotations)
    G = world_transforms(rotations, joints, parents)
    T = np.einsum("vj,jab->vab", weights, G[:, :3, :])
    out = np.einsum("vab,vb->va", T[:, :, :3], v) + T[:, :, 3]
    if translation is not None:
        out = out + translation
    return out


# -- torch ------------------------------------------------------------------------------


def rodrigues_torch(axis_angle):
    """(..., 3) axis-angle tensor -> (..., 3, 3); differentiable, safe at zero."""
    import torch

    r = axis_angle
    theta = torch.sqrt((r * r).sum(-1, keepdim=True) + 1e-16)
    k = r / theta
    kx, ky, kz = k.unbind(-1)
    zero = torch.zeros_like(kx)
    K = torch.stack([zero, -kz, ky, kz, zero, -kx, -ky, kx, zero], dim=-1).reshape(*r.shape[:-1], 3, 3)
    s = torch.sin(theta)[..., None]
    c = torch.cos(theta)[..., None]
    eye = torch.eye(3, dtype=r.dtype, device=r.device).expand(K.shape)
    return eye + s * K + (1 - c) * (K @ K)


def lbs_torch(v_shaped, joints, rotations, posedirs, weights, parents, translation=None):
    """Batched LBS: v_shaped (B, V, 3), joints (B, J, 3), rotations (B, J, 3, 3),
    posedirs (V, 3, P) or None, weights (V, J), parents sequence; returns (B, V, 3)."""
    import torch

    B, n = rotations.shape[0], rotations.shape[1]
    eye3 = torch.eye(3, dtype=v_shaped.dtype, device=v_shaped.device)
    v = v_shaped
    if posedirs is not None and posedirs.shape[-1]:
        feature = (rotations[:, 1:] - eye3).reshape(B, -1)
        v = v + torch.einsum("vcp,bp->bvc", posedirs, feature)
    chains = []
    for j in range(n):
        p = int(parents[j])
        offset = joints[:, j] - (joints[:, p] if p >= 0 else 0)
        local = torch.cat([torch.cat([rotations[:, j], offset[..., None]], -1),
                           torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=v.dtype, device=v.device).expand(B, 1, 4)], 1)
        chains.append(local if p < 0 else chains[p] @ local)
    chain = torch.stack(chains, 1)  # B, J, 4, 4
    rot = chain[:, :, :3, :3]
    trans = chain[:, :, :3, 3] - torch.einsum("bjac,bjc->bja", rot, joints)
    G = torch.cat([rot, trans[..., None]], -1)  # B, J, 3, 4
    T = torch.einsum("vj,bjac->bvac", weights, G)
    out = torch.einsum("bvac,bvc->bva", T[..., :3], v) + T[..., 3]
    if translation is not None:
        out = out + translation[:, None, :]
    return out
