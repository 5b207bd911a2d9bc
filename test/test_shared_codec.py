"""One face codec for several robots (``face_codec.shared.SharedFaceCodec``): each slot's
tokens and frames are those its own codec gives it alone, whichever slots share its pass,
idle beside it or start over."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from moshiface_ros.face_codec.config import config_from_name
from moshiface_ros.face_codec.model import FaceCodec
from moshiface_ros.face_codec.shared import SharedFaceCodec

pytestmark = pytest.mark.usefixtures("one_thread")

STEPS, VERTICES = 10, 50


def codec() -> FaceCodec:
    torch.manual_seed(0)
    return FaceCodec(config_from_name("small-causal", vertices=VERTICES)).eval()


def latents(model: FaceCodec) -> list[torch.Tensor]:
    """Every encoder output from now on (the latents before quantization: tokens alone
    would hide a small drift of the encoder's memory)."""
    seen: list[torch.Tensor] = []
    model.encoder.register_forward_hook(lambda module, args, out: seen.append(out.detach().clone()))
    return seen


def alone(model: FaceCodec, faces: list, robot: list) -> tuple[list, list]:
    """One conversation on its own codec, as a single robot's ``FacePath`` steps it: the
    user's face encoded (the neutral face when unseen), the robot's tokens decoded (nothing
    while the model warms up)."""
    tokens, frames = [], []
    seen = latents(model)
    with model.streaming(1):
        for face, robot_tokens in zip(faces, robot):
            step = np.zeros((2, VERTICES, 3), np.float32) if face is None else face
            code = model.encode_step(torch.from_numpy(step)[None])
            tokens.append(None if face is None else code[0, 0].numpy())
            if robot_tokens is not None:
                frames.append(model.decode_step(torch.from_numpy(robot_tokens).view(1, 1, -1))[0].numpy())
    model.encoder._forward_hooks.clear()
    return tokens, frames, [x[0].numpy() for x in seen]


def conversation(rng: np.random.Generator) -> tuple[list, list]:
    faces = [rng.normal(0, 0.01, (2, VERTICES, 3)).astype(np.float32) for _ in range(STEPS)]
    robot = [rng.integers(0, 256, 8) for _ in range(STEPS)]
    faces[2], robot[0] = None, None  # the user looks away for a step; the model warms up
    return faces, robot


def test_each_slot_is_coded_as_its_own_codec_would_code_it():
    rng = np.random.default_rng(0)
    talks = [conversation(rng) for _ in range(3)]
    model = codec()
    expected = [alone(model, *talk) for talk in talks]
    expected_again = alone(model, talks[2][0][:4], talks[2][1][:4])  # slot 2 starts a new conversation
    got: list[tuple[list, list, list]] = [([], [], []) for _ in range(4)]  # slots 0, 1, 2, then 2 again
    seen = latents(model)
    with SharedFaceCodec(model, 3) as shared:
        at, seat = [0, 0, 0], [0, 1, 2]
        for step in range(STEPS + 6):
            slots = [0] if step < 3 else [0, 1] if step == 6 else [0, 1, 2]  # 1 and 2 join late; 2 idles once
            if step == 8:
                shared.reset(2)  # slot 2 starts over, its neighbours untouched
                at[2], seat[2] = 0, 3
            slots = [k for k in slots if at[k] < (STEPS if seat[k] < 3 else 4)]
            user = shared.encode({k: talks[k][0][at[k]] for k in slots})
            robot = shared.decode({k: talks[k][1][at[k]] for k in slots if talks[k][1][at[k]] is not None})
            for k in slots:
                got[seat[k]][0].append(user[k])
                got[seat[k]][2].append(seen[-1][k].numpy())
                if k in robot:
                    got[seat[k]][1].append(robot[k])
                at[k] += 1
    for k in range(2):
        _same(got[k], expected[k])
    _same(got[2], tuple(part[:len(mine)] for part, mine in zip(expected[2], got[2])))
    assert len(got[2][0]) == 4  # steps 3, 4, 5 and 7
    _same(got[3], expected_again)


def _same(got: tuple[list, list, list], expected: tuple[list, list, list]) -> None:
    assert len(got[0]) == len(expected[0]) and len(got[1]) == len(expected[1])
    for mine, theirs in zip(got[0], expected[0]):
        assert (mine is None) == (theirs is None)
        assert mine is None or np.array_equal(mine, theirs)
    for mine, theirs in zip(got[1] + got[2], expected[1] + expected[2]):
        np.testing.assert_allclose(mine, theirs, rtol=0, atol=1e-6)


def test_slots_outside_the_codec_are_errors():
    with SharedFaceCodec(codec(), 2) as shared:
        with pytest.raises(ValueError, match="slot 2 is outside 0..1"):
            shared.encode({2: None})
        with pytest.raises(ValueError, match="slot -1 is outside"):
            shared.reset(-1)
        assert shared.decode({}) == {}
    with pytest.raises(ValueError, match="at least one slot"):
        SharedFaceCodec(codec(), 0)
