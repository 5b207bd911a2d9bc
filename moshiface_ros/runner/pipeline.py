"""The embedded runner: user audio (and face) in, the robot's audio, text and face out,
a bag of it all.

This wires the same core objects the ROS node wraps, in one process and without ROS:
a user input (``inputs``: a WAV cut into 80 ms chunks at its own rate, as a microphone
would deliver it, or the live microphone) feeds the ``AudioStepper`` that
``speech.session.build_stepper`` builds for the node too, which frames, steps and stamps;
the ``Session`` hands every step to its sinks (``sinks``: robot.wav and text.jsonl, the
bag, the head, the speaker). Step ``i`` is stamped ``start + i * 80 ms`` (the time of its
first user sample), and the robot's output for that step carries the same stamp.

With a Moshi-Face model the session has a face path: the user's face motion (a ``.npy``
of 25 fps displacements, ``--user-face``, or a video tracked to FLAME with VHAP's teeth,
``--user-video``) is encoded into the user's face tokens each step and the robot's face
tokens are decoded into 25 fps face frames stamped like the robot's audio. With ``--head``
every robot face frame (or, without a face, the robot's voice) is also retargeted to the
head's blendshapes and actuators, recorded as the retarget node publishes them.

SIGINT and SIGTERM stop the session at the next step boundary, so the bag is never cut
in the middle of a message: it is closed, reads back with everything written so far,
and the summary says the session was interrupted. Before any output exists they abort
at once and leave nothing behind (see ``signals``). A process killed outright (SIGKILL,
power loss) leaves at most about a second unwritten (see ``outputs``), and
``moshiface recover`` makes what it left whole (``recovery``).
"""

from __future__ import annotations

import time
from typing import Any

from ..errors import MoshifaceError
from ..speech.models import SpeechModels
from ..speech.session import build_stepper, load_models, resolve_placement
from ..speech.stepper import AudioStepper
from ..audio.wav import WavSizeLimit
from .config import RunConfig
from .inputs import UserInput, open_user_input
from .outputs import OutputDir, SessionOutputs, SessionWriteError, describe_write_error
from .session import Session
from .signals import signal_guard
from .sinks import FaceWatchSink, HeadSink, ProgressSink, Sink, head_topics
from .summary import session_summary, started_summary

__all__ = ["RunConfig", "run_session"]


def run_session(config: RunConfig) -> dict[str, Any]:
    """Runs a whole session; returns the summary it also writes to ``summary.json``."""
    with signal_guard() as guard:
        user = open_user_input(config)  # reads and checks the user's files
        head = _load_head(config)
        placement = resolve_placement(config.session)
        directory = OutputDir(config.out, config.overwrite)
        directory.check()
        stepper: AudioStepper | None = None
        outputs: SessionOutputs | None = None
        try:  # from here on, whatever a failure or an early signal interrupts is undone
            directory.lock()
            directory.check()  # again, holding the lock: a run that just ended may have written one
            models = load_models(config.session, placement)
            stepper = build_stepper(config.session, models)
            _check_user_face(user, stepper, models)
            directory.claim()  # only now an old session (--overwrite) goes
            start_ns = time.time_ns()
            guard.defer()
            outputs = SessionOutputs(directory, start_ns, face=stepper.has_face,
                                     ros_topics=head_topics(head) if head is not None else None,
                                     started=started_summary(config, placement, models.description, user))
            return _step_and_finish(config, user, head, stepper, outputs, guard, (placement, models.description))
        except SessionWriteError:
            raise
        except BaseException:
            guard.defer()  # a second signal must not cut the clean-up short
            outputs.discard() if outputs is not None else directory.remove()
            raise
        finally:
            if stepper is not None:
                stepper.close()
            directory.unlock()


def _step_and_finish(config: RunConfig, user: UserInput, head: Any, stepper: AudioStepper,
                     outputs: SessionOutputs, guard: Any, model: tuple[Any, str]) -> dict[str, Any]:
    """Steps the session into its outputs and closes them with the summary. A write error
    (a full disk, the WAV size limit) stops the stepping; what was written is kept and
    closed as far as it can be, and the run ends with one line saying so."""
    start_ns = outputs.files.start_ns
    head_sink = HeadSink(head, outputs.bag) if head is not None else None
    failure: BaseException | None = None
    with user:
        session = Session(stepper, _sinks(config, user, outputs, head_sink), start_ns, user.faces(start_ns),
                          steps=user.expected_steps)
        try:
            session.run(user.chunks(start_ns), stop=lambda: guard.stopped)
        except (OSError, WavSizeLimit) as exc:
            failure = exc
    summary = session_summary(config, model[0], model[1], user, stepper, session.stats,
                              head_sink.outputs if head_sink is not None else None, guard.signal)
    if failure is not None:
        summary["stopped_by_error"] = describe_write_error(failure)
    try:
        summary = outputs.finish(summary)
    except OSError as exc:
        raise SessionWriteError(config.out, exc, len(session.stats.step_times), finished=False) from exc
    if failure is not None:
        raise SessionWriteError(config.out, failure, summary["steps"], finished=True) from failure
    return summary


def _sinks(config: RunConfig, user: UserInput, outputs: SessionOutputs, head: HeadSink | None) -> list[Sink]:
    """Every step goes to the files and the bag, then the head, the speaker, the progress bar."""
    sinks = outputs.sinks() + ([head] if head is not None else []) + [outputs.checkpoint()] + user.sinks()
    if user.face_vertices is not None:
        sinks.append(FaceWatchSink())
    if user.expected_steps is not None:
        sinks.append(ProgressSink(user.expected_steps, config.progress))
    return sinks


def _load_head(config: RunConfig) -> Any:
    """The head to retarget to (a one-line error for a bad head file), or None."""
    if config.head is None:
        return None
    from ..retarget.retargeter import HeadRetargeter

    return HeadRetargeter.from_file(config.head, presentation_delay_ms=config.presentation_delay_ms)


def _check_user_face(user: UserInput, stepper: AudioStepper, models: SpeechModels) -> None:
    """A user face needs a face path of the same topology."""
    if user.face_vertices is None:
        return
    if not stepper.has_face:
        raise MoshifaceError(f"a user face was given, but {models.description} is an audio-only model")
    if user.face_vertices != stepper.face_vertices:
        raise MoshifaceError(f"the user face has {user.face_vertices} vertices, "
                             f"the face codec expects {stepper.face_vertices}")
