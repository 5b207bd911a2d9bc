#!/usr/bin/env python3
"""Audio I/O through a real (private, hardware-free) PulseAudio server, one figure per line.

* round trip speaker -> monitor -> capture: a beep handed to ``AudioPlayback`` with the
  smallest presentation delay the output can honour, until ``AudioCapture.read()`` returns
  the chunk that holds it (listening on the speaker's monitor). Also how far from its due
  time (stamp + delay) the beep is heard, judged by the capture stamps.
* CPU cost per 80 ms chunk of the capture path (PortAudio callback + downmix, resampling,
  framing) and of the playback path (callback, jitter buffer, resampling), measured as
  thread CPU time while the devices run; with echo cancellation, the capture path again.
* Echo return loss enhancement on speech: the robot speaks (synthetic speech), the speaker's
  monitor is looped back into the microphone (``module-loopback``, ~-18 dB, 40 ms), the
  user is silent; ERLE = microphone power / power after cancellation, after the first
  second (convergence).

    python benchmarks/audio_latency.py [--beeps N] [--cpu-seconds S] [--erle-seconds S]

Needs the ``pulseaudio`` programs and PortAudio (``make test`` installs them).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "test"))

from pulse_server import Loopback, Microphone, PulseServer, Sink  # noqa: E402

from moshiface_ros.audio.capture import AudioCapture, CaptureConfig  # noqa: E402
from moshiface_ros.audio.devices import rescan_devices  # noqa: E402
from moshiface_ros.audio.echo import erle_db  # noqa: E402
from moshiface_ros.audio.live import LiveAudio  # noqa: E402
from moshiface_ros.audio.playback import AudioPlayback, PlaybackConfig  # noqa: E402
from moshiface_ros.audio.synth import synthetic_speech, tone  # noqa: E402
from moshiface_ros.messages.types import NS_PER_S, AudioChunk  # noqa: E402
from figures import print_percentiles  # benchmarks/figures.py, beside this script

RATE = 48000


def stats(name: str, values_ms: list[float]) -> None:
    print_percentiles(name, values_ms, unit="ms", scale=1.0)


def _onset_ns(chunks: list[AudioChunk], threshold: float = 0.05) -> tuple[int, int] | None:
    """(stamp of the first loud sample, index of its chunk) or None."""
    for index, chunk in enumerate(chunks):
        loud = np.flatnonzero(np.abs(chunk.samples) > threshold)
        if loud.size:
            return chunk.stamp_ns + int(loud[0]) * NS_PER_S // chunk.sample_rate, index
    return None


def output_lead_ms(playback: AudioPlayback, seconds: float = 0.5) -> float:
    """How far ahead of the wall clock the output reads its timeline (max over a while):
    a chunk due sooner than this after it is pushed is already late."""
    time.sleep(0.2)
    ahead = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        position = playback.buffer.read_position
        if position is not None:
            ahead.append(position * NS_PER_S / 24000 - time.time_ns())
        time.sleep(0.007)
    return max(ahead) / 1e6


def round_trip(beeps: int) -> None:
    beep = np.zeros(1920, np.float32)
    beep[:480] = tone(1000.0, 0.02, 24000)
    with AudioPlayback(PlaybackConfig("speaker", sample_rate=RATE, presentation_delay_ms=0.0)) as playback, \
            AudioCapture(CaptureConfig("room", sample_rate=RATE, channels=2)) as capture:
        lead_ms = output_lead_ms(playback) + 10.0
        playback.config.presentation_delay_ms = lead_ms
        trips, errors = [], []
        for _ in range(beeps):
            pushed = time.time_ns()
            if playback.push(AudioChunk(pushed, 24000, beep)) != "queued":
                continue
            got: list[AudioChunk] = []
            arrivals: list[int] = []
            end = time.monotonic() + 0.6
            while time.monotonic() < end:
                chunk = capture.read(timeout=0.05)
                if chunk is not None and chunk.stamp_ns >= pushed:  # not the last beep's tail
                    got.append(chunk)
                    arrivals.append(time.time_ns())
                    if _onset_ns(got) is not None:
                        break
            found = _onset_ns(got)
            if found is None:
                continue
            onset, index = found
            trips.append((arrivals[index] - pushed) / 1e6)
            errors.append((onset - pushed) / 1e6 - lead_ms)
            time.sleep(0.15)
    print(f"output lead (how far ahead of now the speaker reads, max, + 10 ms): {lead_ms:.1f} ms "
          f"({len(trips)} of {beeps} beeps on time)")
    stats("round trip speaker -> monitor -> capture (push to captured chunk)", trips)
    stats("heard minus due (capture stamp of onset - stamp - delay)", errors)


def cpu_cost(seconds: float, echo: bool) -> None:
    """Run capture and playback together as the runner does; the cores time their own
    threads (PortAudio callbacks, processing) with ``time.thread_time``."""
    speech = synthetic_speech(seconds + 1.0, 24000, seed=5)
    with LiveAudio("mic", "speaker", echo_cancel=echo, input_rate=RATE, input_channels=2,
                   output_rate=RATE, output_channels=2, rescan=False) as audio:
        count = 0
        for chunk in audio.chunks():
            audio.play(AudioChunk(chunk.stamp_ns, 24000, speech[count * 1920:(count + 1) * 1920],
                                  sequence=count))
            count += 1
            if count * 0.08 >= seconds:
                break
        capture, playback = audio.capture.stats(), audio.playback.stats()
    label = " with echo cancellation" if echo else ""
    print(f"capture cpu{label} ({RATE} Hz stereo -> 24 kHz): {capture.cpu_ms_per_chunk:.3f} ms "
          f"per 80 ms chunk (n={capture.chunks})")
    if not echo:
        print(f"playback cpu (24 kHz -> {RATE} Hz stereo): {playback.cpu_ms_per_chunk:.3f} ms "
              f"per 80 ms chunk (n={playback.played})")
        print(f"robot chunks stamped with their user chunk's stamp and sent at once, presentation "
              f"delay {audio.playback.config.presentation_delay_ms:g} ms: {playback.late_drops} of "
              f"{playback.received} late")


def echo_return_loss(seconds: float, server: PulseServer) -> None:
    module = server.load_loopback(Loopback("speaker.monitor", "mic_feed", latency_ms=40, volume=0.5))
    speech = synthetic_speech(seconds + 1.0, 24000, seed=11)
    raw, clean = [], []
    try:
        with LiveAudio("mic", "speaker", echo_cancel=True, input_rate=RATE, input_channels=1,
                       output_rate=RATE, rescan=False) as audio:
            assert audio.echo is not None
            inner = audio.echo.process

            def tap(samples, stamp_ns):
                out = inner(samples, stamp_ns)
                raw.append(np.array(samples, np.float32))
                clean.append(out)
                return out

            audio.echo.process = tap
            count = 0
            for chunk in audio.chunks():
                audio.play(AudioChunk(chunk.stamp_ns, 24000, speech[count * 1920:(count + 1) * 1920],
                                      sequence=count))
                count += 1
                if count * 0.08 >= seconds:
                    break
    finally:
        server.unload_module(module)
    skip = int(round(1.0 / 0.08))  # the first second: the canceller converges
    before, after = np.concatenate(raw[skip:]), np.concatenate(clean[skip:])
    print(f"echo level at the microphone: {10 * np.log10(np.mean(before ** 2) + 1e-20):.1f} dBFS")
    print(f"echo return loss enhancement on speech: {erle_db(before, after):.1f} dB "
          f"(after 1 s, n={len(raw) - skip} chunks)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--beeps", type=int, default=10)
    parser.add_argument("--cpu-seconds", type=float, default=4.0)
    parser.add_argument("--erle-seconds", type=float, default=8.0)
    args = parser.parse_args()
    missing = [name for name in ("pulseaudio", "pactl") if shutil.which(name) is None]
    if missing:
        print(f"audio: skipped, needs a PulseAudio server ({', '.join(missing)} not found; `make test` installs it)")
        return 0
    sinks = [Sink("speaker", RATE, 2), Sink("mic_feed", RATE, 1)]
    mics = [Microphone("mic", "mic_feed"), Microphone("room", "speaker")]
    with PulseServer(sinks, mics) as server:
        rescan_devices()
        round_trip(args.beeps)
        cpu_cost(args.cpu_seconds, echo=False)
        cpu_cost(args.cpu_seconds, echo=True)
        echo_return_loss(args.erle_seconds, server)
    return 0


if __name__ == "__main__":
    sys.exit(main())
