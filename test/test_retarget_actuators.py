"""No input ever drives an actuator past its limits, its slew rate or its acceleration,
and latency compensation shifts each command by exactly its actuator's latency."""

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from moshiface_ros.retarget.actuators import ActuatorBank, ActuatorSpec, CommandSchedule
from moshiface_ros.timing import FACE_FRAME_NS, presentation_ns

SPECS = [
    ActuatorSpec("jaw", "rad", 0.0, 0.0, 0.45, 4.0, 60.0, latency_ms=60, drive={"jawOpen": 1.0}),
    ActuatorSpec("lip_left", "deg", -30.0, 0.0, 30.0, 300.0, 5000.0, latency_ms=25, invert=True,
                 drive={"mouthSmileLeft": 1.0, "mouthFrownLeft": -1.0}),
    ActuatorSpec("neck_yaw", "rad", -0.8, 0.1, 0.8, 1.5, 8.0, latency_ms=120, drive={"head_yaw": 1.0}),
]
TOL = 1e-9

anything = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(-1e12, 1e12),
    st.sampled_from([math.nan, math.inf, -math.inf, 0.0, 1e300, -1e300]),
)
# Frame spacing: regular, jittery, repeated, backwards, long gaps.
spacing = st.one_of(st.just(FACE_FRAME_NS), st.integers(-FACE_FRAME_NS, 5 * FACE_FRAME_NS),
                    st.sampled_from([0, 1, 999_999, 1_000_000, 1_000_001, 10**9, -10**9]))


def _check_limits(bank: ActuatorBank, history: list[tuple[int, np.ndarray]]) -> None:
    """Positions within [min, max]; velocity and acceleration within limits, with dt the
    real spacing of the stamps that moved. Across a gap longer than ``max_dt`` (the
    hardware held the last command) the command holds too and the motion restarts from
    rest, so the limits hold on the real stamps after it, whatever their spacing."""
    velocity = np.zeros(len(bank.specs))
    last_stamp, last = None, bank.neutral.copy()
    for stamp, position in history:
        assert np.all(position >= bank.lower - TOL) and np.all(position <= bank.upper + TOL)
        if last_stamp is None:
            dt = bank.nominal_dt_s
        else:
            dt = (stamp - last_stamp) * 1e-9
            if dt < bank.min_dt_s:
                assert np.array_equal(position, last), "time did not pass but an actuator moved"
                continue
            if dt > bank.max_dt_s:
                assert np.array_equal(position, last), "an actuator jumped across a gap"
                velocity, last_stamp = np.zeros(len(bank.specs)), stamp
                continue
        new_velocity = (position - last) / dt
        assert np.all(np.abs(new_velocity) <= bank.max_velocity * (1 + 1e-9) + TOL)
        assert np.all(np.abs(new_velocity - velocity) <= bank.max_acceleration * dt * (1 + 1e-6) + 1e-6)
        velocity, last, last_stamp = new_velocity, position, stamp


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(spacing, st.lists(anything, min_size=3, max_size=3)), min_size=1, max_size=60))
def test_no_target_sequence_exceeds_limits(steps):
    bank = ActuatorBank(SPECS)
    stamp, history = 10**12, []
    for gap, targets in steps:
        stamp += gap
        history.append((stamp, bank.update(np.array(targets), stamp)))
    _check_limits(bank, history)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.dictionaries(st.sampled_from(["jawOpen", "mouthSmileLeft", "mouthFrownLeft", "head_yaw", "other"]),
                                anything), min_size=1, max_size=40))
def test_no_drive_values_exceed_limits(frames):
    """The whole path from named weights/features to positions."""
    bank = ActuatorBank(SPECS)
    history = []
    for i, values in enumerate(frames):
        levels = bank.drive_levels(values)
        assert np.all(np.isnan(levels) | ((levels >= -1) & (levels <= 1)))
        stamp = i * FACE_FRAME_NS
        history.append((stamp, bank.update(bank.targets(levels), stamp)))
    _check_limits(bank, history)


def test_huge_jump_is_slew_limited_and_lands_without_overshoot():
    bank = ActuatorBank(SPECS[:1])
    positions = [bank.update(np.array([1e9]), i * FACE_FRAME_NS)[0] for i in range(40)]
    steps = np.diff([0.0] + positions)
    assert steps.max() <= 4.0 * 0.04 + 1e-12  # max_velocity * dt
    assert positions[-1] == pytest.approx(0.45)  # reached the clamp (max), never beyond
    assert max(positions) <= 0.45
    # and back to a mid target: it brakes and stops on it
    back = [bank.update(np.array([0.2]), (40 + i) * FACE_FRAME_NS)[0] for i in range(40)]
    assert min(back) >= 0.2 - 1e-9 and back[-1] == pytest.approx(0.2, abs=1e-6)


def test_nan_holds_the_previous_target():
    bank = ActuatorBank(SPECS[:1])
    for i in range(30):
        bank.update(np.array([0.3]), i * FACE_FRAME_NS)
    held = [bank.update(np.array([math.nan]), (30 + i) * FACE_FRAME_NS)[0] for i in range(5)]
    assert held == pytest.approx([0.3] * 5, abs=1e-6)


def test_drive_mapping_neutral_ends_and_invert():
    bank = ActuatorBank(SPECS)
    targets = bank.targets(np.array([1.0, 1.0, -1.0]))
    assert targets.tolist() == [0.45, -30.0, -0.8]  # lip_left is inverted
    assert bank.targets(np.array([0.0, 0.0, 0.0])).tolist() == [0.0, 0.0, 0.1]
    assert bank.targets(np.array([0.5, -0.5, 0.5])).tolist() == pytest.approx([0.225, 15.0, 0.45])
    levels = bank.drive_levels({"jawOpen": 0.7, "mouthSmileLeft": 0.2, "mouthFrownLeft": 0.5, "head_yaw": 3.0})
    assert levels.tolist() == pytest.approx([0.7, -0.3, 1.0])


def test_send_times_are_shifted_by_exactly_each_latency():
    bank = ActuatorBank(SPECS)
    stamp = 1_234_567_890_123
    for delay in (200.0, 150.5, 80.0):
        command = bank.command(bank.update(np.zeros(3), stamp), stamp, delay)
        expected = [stamp + int(round((delay - s.latency_ms) * 1e6)) for s in SPECS]
        assert command.send_at_ns.tolist() == expected
        assert command.send_at_ns.tolist() == [presentation_ns(stamp, delay, s.latency_ms) for s in SPECS]
        # relative to the latency-free presentation time, each is early by its latency, to the nanosecond
        early = presentation_ns(stamp, delay) - command.send_at_ns
        assert early.tolist() == [60_000_000, 25_000_000, 120_000_000]


def test_schedule_releases_each_actuator_at_its_send_time():
    bank = ActuatorBank(SPECS)
    schedule = CommandSchedule(bank.names, bank.neutral)
    commands = []
    for i in range(5):
        stamp = 10**9 + i * FACE_FRAME_NS
        commands.append(bank.command(bank.update(np.array([0.45, 30.0, 0.8]), stamp), stamp, 200.0))
        schedule.push(commands[-1])
    first_change = {}
    previous = bank.neutral.copy()
    for now in range(10**9, 10**9 + 500_000_000, 1_000_000):  # a 1 kHz timer
        due = schedule.due(now)
        if due is not None:
            for j in np.flatnonzero(due != previous):
                first_change.setdefault(j, now)
            previous = due
    for j, spec in enumerate(SPECS):
        assert first_change[j] == commands[0].send_at_ns[j] == 10**9 + int((200.0 - spec.latency_ms) * 1e6)
    assert schedule.pending() == 0
    assert np.array_equal(previous, commands[-1].positions)
