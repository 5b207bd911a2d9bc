"""The decisions the nodes used to make inside their callbacks, tested without ROS: which
face frame the tracker publishes on a tick, when a head's commands and Live Link packets go
out, the model's steps on a worker thread, and the step figures on /diagnostics."""

from __future__ import annotations

import queue
import time
from pathlib import Path

import numpy as np
import pytest

from moshiface_ros.audio.synth import synthetic_speech
from moshiface_ros.constants import FACE_FRAME_NS, STEP_NS
from moshiface_ros.messages.types import AudioChunk, FaceFrame
from moshiface_ros.retarget.arkit import ARKIT_52
from moshiface_ros.retarget.features import matrix_from_euler
from moshiface_ros.retarget.livelink import decode_packet, encode_packet
from moshiface_ros.retarget.presenter import HeadPresenter
from moshiface_ros.retarget.retargeter import HeadRetargeter
from moshiface_ros.retarget.synthetic import synthetic_face
from moshiface_ros.speech.step_monitor import StepMonitor
from moshiface_ros.tracking.camera import CameraFrame
from moshiface_ros.tracking.publisher import NO_BOX, FaceTickSource

ROOT = Path(__file__).resolve().parents[1]
SERVO = ROOT / "config" / "heads" / "servo_head.yaml"
VIRTUAL = ROOT / "config" / "heads" / "arkit_virtual_head.yaml"
T0 = 1_790_000_000 * 10**9  # a wall-clock stamp, as live nodes use


# -- the face tracker's tick -------------------------------------------------------------


class ScriptedCamera:
    """A camera whose frames, status and news the test sets (LiveCamera's own behaviour is
    tested on real videos in test_tracking_video.py)."""

    def __init__(self) -> None:
        self.events: queue.Queue[str] = queue.Queue()
        self.status = "open"
        self.frame: CameraFrame | None = None

    def latest(self, after: int = 0) -> CameraFrame | None:
        frame = self.frame
        return frame if frame is not None and frame.sequence > after and self.status == "open" else None


@pytest.fixture(scope="module")
def tracker():
    pytest.importorskip("mediapipe")
    skimage_data = pytest.importorskip("skimage.data")
    from moshiface_ros.flame.synthetic import build_synthetic_flame
    from moshiface_ros.tracking.embedding import build_embedding
    from moshiface_ros.tracking.tracker import FaceTracker

    flame = build_synthetic_flame(0)
    tracker = FaceTracker(flame, build_embedding(flame))
    yield tracker, skimage_data.astronaut()
    tracker.close()


def test_tick_tracks_new_frames_repeats_young_ones_and_never_publishes_stale_faces(tracker):
    tracker, face = tracker
    camera, wall = ScriptedCamera(), [T0]
    ticks = FaceTickSource(tracker, camera, max_frame_age_s=0.1, wall_clock=lambda: wall[0])
    first = ticks.tick(T0)  # nothing seen yet: face-absent
    assert not first.face.face_present and first.box == NO_BOX and first.face.stamp_ns == T0
    camera.frame = CameraFrame(face, T0, 1)
    tracked = ticks.tick(T0 + FACE_FRAME_NS)
    assert tracked.face.face_present and tracked.box[2] > 50 and tracked.face.stamp_ns == T0 + FACE_FRAME_NS
    wall[0] = T0 + 90_000_000  # no new camera frame, the last one 90 ms old: repeated, restamped
    again = ticks.tick(T0 + 2 * FACE_FRAME_NS)
    assert again.face.face_present and again.face.stamp_ns == T0 + 2 * FACE_FRAME_NS and again.box == tracked.box
    np.testing.assert_array_equal(again.face.vertices, tracked.face.vertices)
    wall[0] = T0 + 110_000_000  # older than max_frame_age: face-absent, never the stale face
    assert not ticks.tick(T0 + 3 * FACE_FRAME_NS).face.face_present
    ticks.max_frame_age_s = 1.0  # a run-time change takes effect on the next tick
    assert ticks.tick(T0 + 4 * FACE_FRAME_NS).face.face_present
    camera.status = "lost"
    camera.events.put("camera 0 lost: no frame could be read; retrying every 1 s")
    lost = ticks.tick(T0 + 5 * FACE_FRAME_NS)
    assert not lost.face.face_present and lost.events == [(True, "camera 0 lost: no frame could be read; "
                                                                 "retrying every 1 s")]
    camera.status = "open"  # back, but no new frame yet: still absent (the old track was forgotten)
    camera.events.put("camera 0 is back")
    back = ticks.tick(T0 + 6 * FACE_FRAME_NS)
    assert not back.face.face_present and back.events == [(False, "camera 0 is back")]
    assert (ticks.published, ticks.absent) == (7, 4)


# -- the retarget node's schedule ---------------------------------------------------------


@pytest.fixture(scope="module")
def face():
    return synthetic_face(5143)


def _frame(face, jaw: float, stamp: int, yaw: float = 0.0) -> FaceFrame:
    w = np.zeros(52)
    w[ARKIT_52.index("jawOpen")] = jaw
    absolute = (face.neutral + face.rig.synthesise(w)) @ matrix_from_euler(yaw, 0.0, 0.0).T
    return FaceFrame(stamp, absolute - face.neutral)


def test_trajectory_mode_sends_each_command_at_once(face):
    presenter = HeadPresenter(HeadRetargeter.from_file(SERVO), frame_id="head_link")
    output = presenter.head.step_face(_frame(face, 0.5, T0))
    command = presenter.accept(output)
    assert command is output.actuators and command.stamp_ns == T0
    assert output.blendshapes.frame_id == "head_link"
    assert presenter.due(T0 + 10**9).positions is None  # nothing held back


def test_forward_mode_holds_each_actuator_until_its_send_time(face):
    head = HeadRetargeter.from_file(SERVO, presentation_delay_ms=300.0)
    presenter = HeadPresenter(head, command_mode="forward")
    output = head.step_face(_frame(face, 1.0, T0, yaw=0.3))
    assert presenter.accept(output) is None
    jaw, neck = head.bank.names.index("jaw"), head.bank.names.index("neck_yaw")
    assert presenter.due(T0 + 179_000_000).positions is None  # neck (120 ms lag) is due at 180 ms
    early = presenter.due(T0 + 180_000_000).positions
    assert early[neck] == output.actuators.positions[neck] and early[jaw] == head.bank.neutral[jaw]
    late = presenter.due(T0 + 240_000_000).positions  # jaw: 300 - 60 ms
    assert late[jaw] == output.actuators.positions[jaw]
    np.testing.assert_array_equal(presenter.due(T0 + 300_000_000).positions, output.actuators.positions)
    assert presenter.due(T0 + 10**9).positions is None  # nothing new since


def test_live_link_goes_out_at_presentation_minus_its_latency_with_wall_clock_stamps(face):
    head = HeadRetargeter.from_file(VIRTUAL, presentation_delay_ms=300.0)
    presenter = HeadPresenter(head, livelink=True, livelink_latency_ms=50.0)
    stamp = time.time_ns()
    for k in range(3):
        presenter.accept(head.step_face(_frame(face, k / 4, stamp + k * FACE_FRAME_NS)))
    assert presenter.due(stamp + 249_000_000).livelink is None
    frame = presenter.due(stamp + 250_000_000 + 2 * FACE_FRAME_NS).livelink  # all due: the newest only
    packet = decode_packet(encode_packet(frame))
    assert packet.weights["jawOpen"] == pytest.approx(0.5, abs=0.03) and 0 <= packet.frame_number < 86400 * 25


def test_marker_points_follow_the_newest_face(face):
    presenter = HeadPresenter(HeadRetargeter.from_file(VIRTUAL))
    assert presenter.marker_points(100) is None
    presenter.accept(presenter.head.step_face(_frame(face, 0.3, T0)))
    points = presenter.marker_points(100)
    assert points.shape == (300, 3) and np.isfinite(points).all()
    assert len(presenter.marker_points(0)) == 3 * len(face.faces)


# -- the conversation node's worker ------------------------------------------------------


def test_step_monitor_counts_late_steps_and_reports_them_once():
    monitor = StepMonitor()
    for k, (took_ms, late) in enumerate([(20, False), (30, False), (95, True), (25, False)]):
        arrived = k * STEP_NS
        assert monitor.record(arrived, arrived + took_ms * 1_000_000, took_ms / 1000) is late
    status = monitor.status("moshiface_node: model", "tiny")
    assert status.level == 1 and "1 late steps" in status.message
    assert status.values["late_steps"] == "1" and float(status.values["step_ms_p50"]) == pytest.approx(27.5)
    assert float(status.values["real_time_factor"]) == pytest.approx(42.5 / 80, abs=1e-3)
    assert monitor.status("moshiface_node: model", "tiny").level == 0  # nothing new since


@pytest.fixture(scope="module")
def stepper():
    from moshiface_ros.speech.session import SessionOptions, build_stepper

    stepper = build_stepper(SessionOptions(model="tiny", device="cpu"))
    yield stepper
    stepper.close()


def test_worker_steps_in_order_and_drops_the_oldest_audio_when_full(stepper):
    from moshiface_ros.speech.worker import StepWorker

    records, problems = [], []
    worker = StepWorker(stepper, lambda record, late: records.append(record), queue_seconds=0.5,
                        on_bad_face=problems.append)
    speech = synthetic_speech(1.2, 24000, seed=3)
    worker.push_face(FaceFrame(0, np.zeros((7, 3))))  # a face of another topology: reported, not fatal
    for k in range(15):  # 1.2 s pushed at once into a 0.5 s queue: the oldest go
        worker.push_audio(AudioChunk(T0 + k * STEP_NS, 24000, speech[k * 1920:(k + 1) * 1920], sequence=k))
    assert worker.queued_seconds() <= 0.5 + 1e-9
    deadline = time.monotonic() + 60
    while not worker.idle() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert worker.idle()
    worker.stop()
    worker.stop()  # idempotent
    assert len(problems) == 1 and "vertices" in str(problems[0])
    assert worker.monitor.dropped_s >= 0.7 - 1e-9 and records
    stamps = [r.robot.stamp_ns for r in records]
    assert stamps[-1] == T0 + 14 * STEP_NS  # the newest audio was stepped
    assert np.all(np.diff(stamps) == STEP_NS)  # dropped chunks filled with silence: the clock keeps pace
    assert worker.monitor.steps == len(records)
