"""When each of a head's outputs goes out: the retarget node's decisions, without ROS.

``HeadRetargeter`` turns a face frame (or the voice) into blendshapes, actuator commands
and a Live Link frame. Some go out at once (blendshape weights; a trajectory, which a
joint trajectory controller itself times to the presentation), others wait: a forward
command controller moves as soon as it hears a value, so each actuator's value is held
until ``stamp + presentation delay - its latency``, and Live Link packets until
``stamp + presentation delay - livelink latency``. ``HeadPresenter`` keeps those queues
and the newest mesh for rviz2; the node asks it what to send on each timer tick.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .actuators import ActuatorCommand, CommandSchedule
from .livelink import LiveLinkFrame, LiveLinkSchedule
from .marker import decimate_faces, triangle_list
from .retargeter import HeadRetargeter, RetargetOutput

TRAJECTORY, FORWARD = "trajectory", "forward"


@dataclass
class Due:
    """What a timer tick must send: a forward controller's positions, a Live Link frame."""

    positions: np.ndarray | None = None
    livelink: LiveLinkFrame | None = None


class HeadPresenter:
    """Routes a head's outputs: at once, or held until their send time."""

    def __init__(self, head: HeadRetargeter, *, command_mode: str = TRAJECTORY, livelink: bool = False,
                 livelink_latency_ms: float = 0.0, frame_id: str = "robot_head") -> None:
        if command_mode not in (TRAJECTORY, FORWARD):
            raise ValueError(f"command_mode must be {TRAJECTORY!r} or {FORWARD!r}, got {command_mode!r}")
        self.head = head
        self.command_mode = command_mode
        self.frame_id = frame_id
        self.schedule = CommandSchedule(head.bank.names, head.bank.neutral) if command_mode == FORWARD else None
        self.livelink = LiveLinkSchedule(head.presentation_delay_ms, livelink_latency_ms) if livelink else None
        self.last_mesh: RetargetOutput | None = None

    @property
    def has_actuators(self) -> bool:
        return bool(self.head.bank.specs)

    def accept(self, output: RetargetOutput) -> ActuatorCommand | None:
        """Takes one output (its blendshapes get this head's ``frame_id``); returns the
        command to send at once (trajectory mode), queues the rest."""
        if output.blendshapes is None:
            return None
        output.blendshapes.frame_id = self.frame_id
        if output.vertices is not None:
            self.last_mesh = output
        if self.livelink is not None:
            frame = self.head.livelink_frame(output)
            if frame is not None:
                self.livelink.push(output.stamp_ns, frame)
        if output.actuators is None:
            return None
        if self.schedule is not None:
            self.schedule.push(output.actuators)
            return None
        return output.actuators

    @property
    def sends_later(self) -> bool:
        """Whether anything is ever held for a later send (forward commands, Live Link);
        without either, a node needs no send timer at all."""
        return self.schedule is not None or self.livelink is not None

    def pending(self) -> int:
        """Values still held for a later send: when 0, a node's send timer can sleep until
        ``accept`` queues something again (an idle timer at 250 Hz costs a core ~7 %)."""
        return ((self.schedule.pending() if self.schedule is not None else 0)
                + (self.livelink.pending() if self.livelink is not None else 0))

    def due(self, now_ns: int) -> Due:
        """What became due by ``now_ns`` (forward positions only when one changed)."""
        positions = self.schedule.due(now_ns) if self.schedule is not None else None
        frame = self.livelink.due(now_ns) if self.livelink is not None else None
        return Due(positions, frame)

    def marker_points(self, max_triangles: int) -> np.ndarray | None:
        """The newest face mesh as triangle corners (3 per triangle, at most
        ``max_triangles``; 0: all), or None before a face frame came. ValueError when
        the head's topology has no triangles."""
        output = self.last_mesh
        if output is None:
            return None
        _, faces = self.head.mesh(len(output.vertices))
        if faces is None:
            raise ValueError("the head's mesh has no triangles: no rviz2 marker")
        return triangle_list(output.vertices, decimate_faces(faces, max_triangles))
