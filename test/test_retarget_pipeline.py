"""HeadRetargeter end to end: face frames and the robot's audio in, blendshapes, actuator
commands, Live Link frames and bag messages out."""

from pathlib import Path

import numpy as np
import pytest
import yaml
from rosbags.highlevel import AnyReader
from rosbags.rosbag2 import StoragePlugin, Writer

from moshiface_ros.audio.synth import synthetic_speech
from moshiface_ros.constants import PRESENTATION_DELAY_MS
from moshiface_ros.messages.standard import JOINT_TRAJECTORY, retarget_records, retarget_topics
from moshiface_ros.messages.types import AudioChunk, FaceFrame
from moshiface_ros.recording.bag import RosbagsFactory
from moshiface_ros.recording.definitions import make_typestore
from moshiface_ros.regions import save_regions
from moshiface_ros.retarget.arkit import ARKIT_52
from moshiface_ros.retarget.features import matrix_from_euler
from moshiface_ros.retarget.livelink import decode_packet, encode_packet
from moshiface_ros.retarget.retargeter import HeadRetargeter
from moshiface_ros.retarget.rig import save_rig
from moshiface_ros.retarget.synthetic import synthetic_face
from moshiface_ros.timing import FACE_FRAME_NS, STEP_NS
from moshiface_ros.topics import ROBOT_ACTUATORS, ROBOT_BLENDSHAPES

ROOT = Path(__file__).resolve().parents[1]
SERVO = ROOT / "config" / "heads" / "servo_head.yaml"
VIRTUAL = ROOT / "config" / "heads" / "arkit_virtual_head.yaml"
JAW = ARKIT_52.index("jawOpen")


@pytest.fixture(scope="module")
def face():
    return synthetic_face(5143)


def _frame(face, weights: dict, stamp: int, rotation=(0.0, 0.0, 0.0)) -> FaceFrame:
    w = np.zeros(52)
    for name, value in weights.items():
        w[ARKIT_52.index(name)] = value
    absolute = (face.neutral + face.rig.synthesise(w)) @ matrix_from_euler(*rotation).T
    return FaceFrame(stamp, absolute - face.neutral)


def test_virtual_head_solves_the_rig_and_sends_live_link(face):
    head = HeadRetargeter.from_file(VIRTUAL)
    truth = {"jawOpen": 0.6, "eyeBlinkLeft": 0.9, "mouthSmileLeft": 0.5}
    out = head.step_face(_frame(face, truth, 10**9, rotation=(0.2, 0.0, 0.0)))
    assert out.source == "face" and out.actuators is None
    got = dict(zip(out.blendshapes.names, out.blendshapes.weights))
    for name, value in truth.items():
        assert got[name] == pytest.approx(value, abs=0.03), name
    assert out.head_rotation[0] == pytest.approx(0.2, abs=2e-3)
    packet = decode_packet(encode_packet(head.livelink_frame(out)))
    assert packet.subject == "MoshiFace" and packet.weights["jawOpen"] == pytest.approx(got["jawOpen"])
    assert packet.rotations["headYaw"] == pytest.approx(0.2, abs=2e-3)


def test_servo_head_moves_its_jaw_within_limits_and_early(face):
    head = HeadRetargeter.from_file(SERVO, presentation_delay_ms=200.0)
    jaw = head.bank.names.index("jaw")
    neck = head.bank.names.index("neck_yaw")
    positions = []
    for i in range(30):
        out = head.step_face(_frame(face, {"jawOpen": 1.0}, i * FACE_FRAME_NS, rotation=(0.3, 0.0, 0.0)))
        positions.append(out.actuators.positions.copy())
        assert out.actuators.send_at_ns[jaw] == i * FACE_FRAME_NS + 140_000_000  # 200 ms - 60 ms
        assert out.actuators.send_at_ns[neck] == i * FACE_FRAME_NS + 80_000_000  # 200 ms - 120 ms
    positions = np.array(positions)
    assert positions[-1, jaw] == pytest.approx(25.0)  # jawOpen 1 -> max (features saturate)
    assert positions[-1, neck] == pytest.approx(0.3 / 0.6 * 0.7, abs=0.01)
    assert np.all(np.abs(np.diff(positions[:, jaw])) <= 250.0 * 0.04 + 1e-9)
    assert np.all(positions >= head.bank.lower) and np.all(positions <= head.bank.upper)


def test_bad_and_empty_frames_move_nothing_and_are_counted(face):
    head = HeadRetargeter.from_file(SERVO)
    bad = [FaceFrame(0, np.full((5143, 3), np.nan)), FaceFrame(1, np.zeros((100, 3))),
           FaceFrame(2, np.full((5143, 3), 1e9))]
    for frame in bad:
        assert head.step_face(frame).source == "none"
    assert head.step_face(FaceFrame(3, face_present=False)).source == "none"
    assert head.step_face(FaceFrame(4)).source == "none"
    assert head.bad_frames == 3 and head.empty_frames == 2 and "1 m" in head.last_problem
    assert np.array_equal(head.bank.position, head.bank.neutral)


def test_fallback_drives_the_mouth_only_when_no_face_arrives(face):
    speech = synthetic_speech(2.0, 24000, seed=1)
    speech[:9600] = 0.4 * np.sin(np.arange(9600) * 2 * np.pi * 300 / 24000)  # a loud start
    chunks = [AudioChunk(i * STEP_NS, 24000, speech[i * 1920:(i + 1) * 1920]) for i in range(len(speech) // 1920)]
    audio_only = HeadRetargeter.from_file(SERVO)
    outputs = [o for c in chunks for o in audio_only.step_audio(c)]
    assert len(outputs) == 2 * len(chunks) and {o.source for o in outputs} == {"fallback"}
    jaw = audio_only.bank.names.index("jaw")
    assert max(o.actuators.positions[jaw] for o in outputs[:10]) > 5.0  # degrees: the jaw opened
    assert max(o.blendshapes.weights[JAW] for o in outputs[:10]) > 0.4

    with_face = HeadRetargeter.from_file(SERVO)
    fallback_count = 0
    for i, chunk in enumerate(chunks):
        if i < 10:  # the face model delivers for 0.8 s, then stops
            fallback_count += len(with_face.step_audio(chunk))
            with_face.step_face(_frame(face, {"jawOpen": 0.2}, chunk.stamp_ns))
            with_face.step_face(_frame(face, {"jawOpen": 0.2}, chunk.stamp_ns + FACE_FRAME_NS))
        else:
            fallback_count += len(with_face.step_audio(chunk))
    # the first chunk comes before any face (2 fallback frames); none while faces arrive;
    # after the last face (760 ms) the frames up to 1260 ms wait out the 500 ms timeout
    after_timeout = len(chunks) * 2 - 20 - len(range(800, 1261, 40))
    assert fallback_count == 2 + after_timeout


def test_rig_and_topology_files(tmp_path, face):
    save_rig(face.rig, tmp_path / "rig.npz")
    save_regions(face.regions, tmp_path / "regions.yaml")
    head = {"name": "files", "topology": {"regions": "regions.yaml"},
            "blendshapes": {"source": "rig", "rig": "rig.npz", "solver": {"temporal": 0.0, "symmetry": 0.0}},
            "actuators": [{"name": "jaw", "units": "rad", "min": 0.0, "neutral": 0.0, "max": 0.4,
                           "max_velocity": 100.0, "max_acceleration": 10000.0, "drive": {"jawOpen": 1.0}}]}
    (tmp_path / "head.yaml").write_text(yaml.safe_dump(head))
    retargeter = HeadRetargeter.from_file(tmp_path / "head.yaml")
    out = retargeter.step_face(_frame(face, {"jawOpen": 0.5}, 0))
    assert out.blendshapes.weights[JAW] == pytest.approx(0.5, abs=0.01)
    assert out.actuators.positions[0] == pytest.approx(0.2, abs=0.005)
    neutral, faces = retargeter.mesh(5143)
    assert np.array_equal(faces, face.faces) and neutral.shape == (5143, 3)
    assert retargeter.step_face(_frame(synthetic_face(5023), {}, 1)).source == "none"  # other topology
    head["actuators"][0]["drive"] = {"jawOpn": 1.0}
    (tmp_path / "head.yaml").write_text(yaml.safe_dump(head))
    with pytest.raises(Exception, match=r"actuators\[0\]\.drive\.jawOpn.*did you mean 'jawOpen'"):
        HeadRetargeter.from_file(tmp_path / "head.yaml")


def test_outputs_go_into_a_bag_and_read_back(tmp_path, face):
    head = HeadRetargeter.from_file(SERVO)
    typestore = make_typestore()
    outputs = [head.step_face(_frame(face, {"jawOpen": i / 10}, 10**9 + i * FACE_FRAME_NS)) for i in range(5)]
    with Writer(tmp_path / "bag", version=8, storage_plugin=StoragePlugin.MCAP) as writer:
        connections = {}
        for out in outputs:
            for topic, type_name, message in retarget_records(out, RosbagsFactory(typestore),
                                                              head.presentation_delay_ms):
                if topic not in connections:
                    connections[topic] = writer.add_connection(topic, type_name, typestore=typestore)
                writer.write(connections[topic], out.stamp_ns, typestore.serialize_cdr(message, type_name))
    with AnyReader([tmp_path / "bag"]) as reader:
        messages = {}
        for connection, _, raw in reader.messages():
            messages.setdefault(connection.topic, []).append(reader.deserialize(raw, connection.msgtype))
    assert len(messages[ROBOT_BLENDSHAPES]) == 5 and len(messages[ROBOT_ACTUATORS]) == 5
    last = messages[ROBOT_ACTUATORS][-1]
    assert list(last.joint_names) == head.bank.names
    assert np.allclose(last.points[0].positions, outputs[-1].actuators.positions)
    assert head.presentation_delay_ms == PRESENTATION_DELAY_MS  # the one default
    assert last.points[0].time_from_start.sec * 10**9 + last.points[0].time_from_start.nanosec == round(
        PRESENTATION_DELAY_MS * 1e6)
    assert [m.header.stamp.sec * 10**9 + m.header.stamp.nanosec for m in messages[ROBOT_ACTUATORS]] == [
        o.stamp_ns for o in outputs]  # stamped with the face frame, not 0
    assert retarget_topics(True) == {ROBOT_BLENDSHAPES: "moshiface_ros/msg/BlendshapeWeights",
                                     ROBOT_ACTUATORS: JOINT_TRAJECTORY}
    assert list(messages[ROBOT_BLENDSHAPES][-1].names) == list(ARKIT_52)
