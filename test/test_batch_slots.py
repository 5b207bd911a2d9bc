"""Several robots' conversations through one batched model (``speech.slots``): each robot's
``AudioStepper`` over a ``SlotEngine`` gives, with greedy sampling, what it gives alone,
whichever robots' steps happen to be gathered together."""

import os

os.environ.setdefault("NO_TORCH_COMPILE", "1")

import threading

import numpy as np
import pytest

from moshiface_ros.audio.synth import synthetic_speech
from moshiface_ros.messages.types import AudioChunk
from moshiface_ros.speech.batch import BatchedEngine
from moshiface_ros.speech.engine import Sampling, SpeechEngine
from moshiface_ros.speech.models import build_tiny
from moshiface_ros.speech.slots import SlotScheduler
from moshiface_ros.speech.stepper import AudioStepper

pytestmark = pytest.mark.usefixtures("one_thread")

GREEDY = Sampling(temperature=0.0, text_temperature=0.0, face_temperature=0.0)
RATE, CHUNK = 16000, 1280  # a 16 kHz microphone delivering 80 ms chunks


@pytest.fixture(scope="module")
def tiny():
    return build_tiny()


def chunks(seed: int, count: int = 8) -> list[AudioChunk]:
    pcm = synthetic_speech(count * CHUNK / RATE, RATE, seed=seed)
    return [AudioChunk(10**9 + i * 80_000_000, RATE, pcm[i * CHUNK:(i + 1) * CHUNK], sequence=i) for i in range(count)]


def play(stepper: AudioStepper, inputs: list[AudioChunk], start: threading.Event | None = None) -> list:
    if start is not None:
        start.wait()
    records = []
    for chunk in inputs:
        records += stepper.push(chunk)
    return records + stepper.flush()


def test_robots_sharing_a_batch_hear_what_they_would_alone(tiny):
    inputs = {"a": chunks(1), "b": chunks(2), "c": chunks(3, 5)}
    alone = {}
    for name, data in inputs.items():
        with AudioStepper(SpeechEngine(tiny, GREEDY, seed=0)) as stepper:
            alone[name] = play(stepper, data)
    scheduler = SlotScheduler(BatchedEngine(tiny, 3, GREEDY), gather_s=0.5, idle_s=60.0)  # every robot counts as talking
    sizes, plain_step = [], scheduler.engine.step
    scheduler.engine.step = lambda pcm, faces=None: sizes.append(len(pcm)) or plain_step(pcm, faces)
    steppers = {name: AudioStepper(scheduler.slot(i)) for i, name in enumerate(inputs)}
    shared, go = {}, {"a": threading.Event(), "b": threading.Event(), "c": threading.Event()}

    def robot(name):
        shared[name] = play(steppers[name], inputs[name], go[name])

    threads = [threading.Thread(target=robot, args=(name,)) for name in inputs]
    for thread in threads:
        thread.start()
    go["a"].set(), go["b"].set()
    threads[0].join(60), threads[1].join(60)
    go["c"].set()  # a robot that joins after the others finished
    threads[2].join(60)
    for name in inputs:
        assert len(shared[name]) == len(alone[name]) > 0, name
        for mine, theirs in zip(shared[name], alone[name]):
            assert (mine.text is None) == (theirs.text is None), name
            assert mine.text is None or mine.text.token_id == theirs.text.token_id, name
            assert mine.robot.stamp_ns == theirs.robot.stamp_ns, name
            np.testing.assert_allclose(mine.robot.samples, theirs.robot.samples, atol=1e-4, err_msg=name)
    assert max(sizes) == 2 and min(sizes) == 1  # a and b were stepped together, c alone
    for stepper in steppers.values():
        stepper.close()
    scheduler.close()


def test_a_slot_is_one_robots(tiny):
    with BatchedEngine(tiny, 2, GREEDY) as engine:
        scheduler = SlotScheduler(engine)
        first = scheduler.slot(0)
        with pytest.raises(ValueError, match="slot 0 is taken"):
            scheduler.slot(0)
        with pytest.raises(ValueError, match="outside 0..1"):
            scheduler.slot(2)
        first.step(np.zeros(1920, np.float32))
        assert first.steps == 1
        first.close()  # the robot left: its slot starts over
        assert engine.steps[0] == 0 and scheduler.slot(0).steps == 0


def test_robot_names_for_the_multi_robot_node():
    from moshiface_ros.nodes.moshiface_settings import parse_robots
    from moshiface_ros.nodes.paramspec import ParameterError

    assert parse_robots(None) == () and parse_robots(["a", "robot_2"]) == ("a", "robot_2")
    for bad, words in ((["a", "a"], "must differ"), (["2a"], "not a ROS name token"), (["a/b"], "not a ROS name"),
                       ("a", "expected a list of names"), ([f"r{k}" for k in range(65)], "at most 64")):
        with pytest.raises(ParameterError, match=words):
            parse_robots(bad)


def test_robot_steppers_share_one_batch_and_name_their_frames(tiny):
    from moshiface_ros.speech.session import SessionOptions
    from moshiface_ros.speech.slots import build_robot_steppers

    scheduler, steppers = build_robot_steppers(SessionOptions(sampling=GREEDY), tiny, ("a", "b"))
    try:
        assert scheduler.engine.slots == 2 and [s.engine.index for s in steppers] == [0, 1]
        assert all(s.has_face and s.face.shared for s in steppers) and scheduler.codec is not None
        assert steppers[0].face.codec is steppers[1].face.codec is scheduler.codec.codec  # one codec for both
        records = [record for chunk in chunks(5, 3) for record in steppers[1].push(chunk)]
        assert records and {r.robot.frame_id for r in records} == {"b/robot_head"}
        assert steppers[1].engine.steps == len(records) and steppers[0].engine.steps == 0
        assert records[0].robot_face[0].frame_id == "b/robot_head"
    finally:
        for stepper in steppers:
            stepper.close()
        scheduler.close()


def faces_for(stepper: AudioStepper, seed: int, count: int = 8) -> None:
    """The user's face at 25 fps over ``count`` steps (small random motion), pushed at once."""
    from moshiface_ros.messages.types import FaceFrame

    rng = np.random.default_rng(seed)
    for k in range(2 * count):
        moved = rng.normal(0, 0.002, (stepper.face_vertices, 3)).astype(np.float32)
        stepper.push_user_face(FaceFrame(10**9 + k * 40_000_000, moved, face_present=k != 5))


def test_robots_sharing_the_face_codec_see_and_show_the_faces_they_would_alone(tiny):
    """Each robot's user face tokens and face frames, encoded and decoded in one codec pass
    with the other robot's, are those of a robot alone with its own codec."""
    from moshiface_ros.face_codec.stream import FacePath, tiny_codec
    from moshiface_ros.speech.session import SessionOptions
    from moshiface_ros.speech.slots import build_robot_steppers

    inputs = {"a": chunks(1), "b": chunks(2)}
    alone = {}
    for seed, (name, data) in enumerate(inputs.items()):
        with AudioStepper(SpeechEngine(tiny, GREEDY, seed=0), face=FacePath(tiny_codec())) as stepper:
            faces_for(stepper, seed)
            alone[name] = play(stepper, data)
    scheduler, steppers = build_robot_steppers(SessionOptions(sampling=GREEDY), tiny, tuple(inputs))
    scheduler.gather_s, scheduler.idle_s = 0.5, 60.0
    sizes, plain = [], scheduler.codec.encode
    scheduler.codec.encode = lambda frames: sizes.append(len(frames)) or plain(frames)
    shared = {}
    try:
        for seed, stepper in enumerate(steppers):
            faces_for(stepper, seed)
        threads = [threading.Thread(target=lambda n=n, s=s: shared.__setitem__(n, play(s, inputs[n])))
                   for n, s in zip(inputs, steppers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    finally:
        for stepper in steppers:
            stepper.close()
        scheduler.close()
    assert max(sizes) == 2  # the two robots' faces went through the codec together
    for name in inputs:
        assert len(shared[name]) == len(alone[name]) > 0, name
        assert sum(r.user_face_tokens is not None for r in shared[name]) >= 5, name
        assert sum(r.robot_face_tokens is not None for r in shared[name]) >= 5, name
        for mine, theirs in zip(shared[name], alone[name]):
            for got, want in ((mine.user_face_tokens, theirs.user_face_tokens),
                              (mine.robot_face_tokens, theirs.robot_face_tokens)):
                assert (got is None) == (want is None), name
                assert got is None or np.array_equal(got.tokens, want.tokens), name
            for got, want in zip(mine.robot_face, theirs.robot_face):
                assert got.stamp_ns == want.stamp_ns and got.frame_id == f"{name}/robot_head"
                np.testing.assert_allclose(got.vertices, want.vertices, rtol=0, atol=1e-6, err_msg=name)


def test_a_silent_robot_is_not_waited_for(tiny):
    """Robot b says nothing: after idle_s robot a's steps run at once, alone in the batch,
    instead of each waiting gather_s for b."""
    import time

    scheduler = SlotScheduler(BatchedEngine(tiny, 2, GREEDY), gather_s=2.0, idle_s=0.05)
    a, b = AudioStepper(scheduler.slot(0)), AudioStepper(scheduler.slot(1))
    try:
        time.sleep(0.1)
        start = time.monotonic()
        records = [record for chunk in chunks(6, 4) for record in a.push(chunk)]
        assert len(records) >= 2 and time.monotonic() - start < 2.0  # not even one gathering waited out
        assert scheduler.engine.steps == [len(records), 0]
    finally:
        a.close(), b.close()
        scheduler.engine.close()
