"""Actuator commands that never exceed a head's limits, sent early by each actuator's lag.

Each actuator (a servo, a motor, a blendshape channel of a physical head) is driven by a
weighted sum ``s`` of blendshape weights and/or normalised features, clamped to [-1, 1]:
``s = 0`` is the neutral position, ``s = 1`` the maximum (the minimum when ``invert``),
``s = -1`` the other end. The resulting target goes through a limiter that guarantees,
whatever arrives (NaN, infinities, huge jumps, time going backwards, long gaps):

* ``min <= position <= max``;
* ``|position change| <= max_velocity * dt``;
* ``|velocity change| <= max_acceleration * dt`` (velocity = position change / dt);

where ``dt`` is the time between the face frames the commands belong to (a stamp less
than 1 ms after the previous one moves nothing). A gap longer than ``max_dt`` (a face
dropout) does not license a jump, and the actuator does not resume at its old speed: the
hardware held the last command through the gap, so the first command after it holds the
position too and the motion restarts from rest, accelerating within the limit on the real
timestamps whatever their spacing. The limiter plans its braking:
it only accepts a velocity from which it can still stop, under the acceleration limit,
before the position limits and before the target, so it neither overshoots nor has to
be clipped at a limit (which would be an infinite deceleration).

A command for the face of stamp ``t`` is sent at ``t + presentation delay - latency``
(``timing.presentation_ns``), so a slow actuator starts earlier and every part of the
face lands together with the voice.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from ..timing import FACE_FRAME_NS, PRESENTATION_DELAY_MS, presentation_ns

NS = 1e-9


@dataclass
class ActuatorSpec:
    """One actuator of a head file (see head.py for the YAML and its checks)."""

    name: str
    units: str
    min: float
    neutral: float
    max: float
    max_velocity: float  # units per second
    max_acceleration: float  # units per second squared
    latency_ms: float = 0.0
    invert: bool = False
    drive: dict[str, float] = field(default_factory=dict)


@dataclass
class ActuatorCommand:
    """Positions of every actuator for one face frame, and when to send each."""

    stamp_ns: int
    names: list[str]
    positions: np.ndarray  # float64, in each actuator's units
    send_at_ns: np.ndarray  # int64, per actuator


def _brake_speed(distance: np.ndarray, accel: np.ndarray, dt: float) -> np.ndarray:
    """The largest speed v with which, after moving v*dt, one can still stop within
    ``distance`` decelerating at ``accel``: v*dt + v^2 / (2 accel) <= distance."""
    d = np.maximum(distance, 0.0)
    return accel * (np.sqrt(dt * dt + 2.0 * d / accel) - dt)


class ActuatorBank:
    """Drive mapping + limiter for all of a head's actuators (vectorised)."""

    def __init__(self, specs: list[ActuatorSpec], nominal_dt_s: float = FACE_FRAME_NS * NS,
                 max_dt_s: float = 2.5 * FACE_FRAME_NS * NS, min_dt_s: float = 1e-3) -> None:
        self.specs = list(specs)
        self.names = [s.name for s in self.specs]
        self.lower = np.array([s.min for s in self.specs], np.float64)
        self.upper = np.array([s.max for s in self.specs], np.float64)
        self.neutral = np.array([s.neutral for s in self.specs], np.float64)
        self.max_velocity = np.array([s.max_velocity for s in self.specs], np.float64)
        self.max_acceleration = np.array([s.max_acceleration for s in self.specs], np.float64)
        self.latency_ms = np.array([s.latency_ms for s in self.specs], np.float64)
        invert = np.array([s.invert for s in self.specs], bool)
        self._positive_end = np.where(invert, self.lower, self.upper)
        self._negative_end = np.where(invert, self.upper, self.lower)
        self.nominal_dt_s, self.max_dt_s, self.min_dt_s = nominal_dt_s, max_dt_s, min_dt_s
        self.reset()

    def reset(self) -> None:
        """At rest at the neutral positions, no stamp seen yet."""
        self.position = self.neutral.copy()
        self.velocity = np.zeros(len(self.specs))
        self._target = self.neutral.copy()
        self._last_stamp: int | None = None

    # -- drive ---------------------------------------------------------------------------

    def drive_levels(self, values: dict[str, float]) -> np.ndarray:
        """Each actuator's ``s`` in [-1, 1] from named values (missing names count 0;
        a non-finite value makes that actuator's level NaN, i.e. hold)."""
        levels = np.zeros(len(self.specs))
        for i, spec in enumerate(self.specs):
            total = 0.0
            for name, coefficient in spec.drive.items():
                total += coefficient * float(values.get(name, 0.0))
            levels[i] = total
        with np.errstate(invalid="ignore"):
            return np.where(np.isfinite(levels), np.clip(levels, -1.0, 1.0), np.nan)

    def targets(self, levels: np.ndarray) -> np.ndarray:
        """Positions for drive levels (NaN stays NaN)."""
        levels = np.asarray(levels, np.float64)
        return np.where(levels >= 0, self.neutral + levels * (self._positive_end - self.neutral),
                        self.neutral - levels * (self._negative_end - self.neutral))

    # -- limiter ---------------------------------------------------------------------------

    def update(self, targets: np.ndarray, stamp_ns: int) -> np.ndarray:
        """Moves towards ``targets`` (non-finite entries keep the previous target) for the
        frame stamped ``stamp_ns``; returns the new positions. A stamp less than
        ``min_dt_s`` after the last one moves nothing (no time has passed: the same frame
        again, or time going backwards)."""
        targets = np.asarray(targets, np.float64).reshape(-1)
        if targets.shape != self.position.shape:
            raise ValueError(f"expected {len(self.specs)} targets, got {targets.size}")
        with np.errstate(invalid="ignore"):
            self._target = np.clip(np.where(np.isfinite(targets), targets, self._target), self.lower, self.upper)
        if self._last_stamp is None:
            dt = self.nominal_dt_s
        else:
            dt = (int(stamp_ns) - self._last_stamp) * NS
            if dt < self.min_dt_s:
                return self.position.copy()
            if dt > self.max_dt_s:  # a gap: the actuator stood at its last command; restart from rest
                self._last_stamp = int(stamp_ns)
                self.velocity = np.zeros_like(self.velocity)
                return self.position.copy()
        self._last_stamp = int(stamp_ns)
        return self._step(dt)

    def _step(self, dt: float) -> np.ndarray:
        p, v, a, vmax = self.position, self.velocity, self.max_acceleration, self.max_velocity
        error = self._target - p
        wanted = np.sign(error) * np.minimum(np.abs(error) / dt, _brake_speed(np.abs(error), a, dt))
        low = np.maximum.reduce([v - a * dt, -vmax, -_brake_speed(p - self.lower, a, dt)])
        high = np.minimum.reduce([v + a * dt, vmax, _brake_speed(self.upper - p, a, dt)])
        velocity = np.minimum(np.maximum(wanted, low), high)
        new = np.clip(p + velocity * dt, self.lower, self.upper)
        self.velocity = (new - p) / dt
        self.position = new
        return new.copy()

    # -- timing ----------------------------------------------------------------------------

    def send_times(self, stamp_ns: int, delay_ms: float = PRESENTATION_DELAY_MS) -> np.ndarray:
        """When each actuator's command for the frame of ``stamp_ns`` must be sent."""
        return np.array([presentation_ns(stamp_ns, delay_ms, lag) for lag in self.latency_ms], np.int64)

    def command(self, positions: np.ndarray, stamp_ns: int, delay_ms: float = PRESENTATION_DELAY_MS) -> ActuatorCommand:
        return ActuatorCommand(int(stamp_ns), list(self.names), np.asarray(positions, np.float64).copy(),
                               self.send_times(stamp_ns, delay_ms))


class CommandSchedule:
    """Holds commands until each actuator's send time; a timer asks what is due.

    ``due(now)`` returns every actuator's latest value whose send time has come (the
    neutral position before any), or None when nothing became due since the last call,
    so a forward command controller gets one full position vector per change."""

    def __init__(self, names: list[str], neutral: np.ndarray) -> None:
        self.names = list(names)
        self.current = np.asarray(neutral, np.float64).copy()
        self._queues: list[deque[tuple[int, float]]] = [deque() for _ in self.names]

    def push(self, command: ActuatorCommand) -> None:
        for queue, at, value in zip(self._queues, command.send_at_ns, command.positions):
            queue.append((int(at), float(value)))

    def pending(self) -> int:
        return sum(len(q) for q in self._queues)

    def due(self, now_ns: int) -> np.ndarray | None:
        changed = False
        for i, queue in enumerate(self._queues):
            while queue and queue[0][0] <= now_ns:
                self.current[i] = queue.popleft()[1]
                changed = True
        return self.current.copy() if changed else None
