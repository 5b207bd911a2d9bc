"""A private PulseAudio server with no hardware, for tests and benchmarks that drive real audio.

``PulseServer`` starts ``pulseaudio`` in the foreground as a child process with its own
runtime directory under /tmp, a unix socket in it (``module-native-protocol-unix``) and
only the devices a test asks for:

* null sinks (``module-null-sink``) at a chosen rate and channel count; a sink's
  ``.monitor`` source is what was played into it, which is how a test hears a speaker;
* virtual microphones (``module-remap-source``) over a sink's monitor: what a test
  plays into the "feed" sink comes out of the microphone, as a voice would;
* optionally a ``module-loopback`` from the speaker's monitor into a microphone feed:
  the robot hearing itself, with the delay and level of a real echo path.

PortAudio does not talk to PulseAudio here directly: it goes through ALSA's ``pulse``
plugin, which on its own shows only the ``pulse``/``default`` devices. So the server also
writes an ALSA configuration file that defines one PCM per sink or microphone, named
like the Pulse device (playback-only for sinks, capture-only for microphones), and puts
it on ``ALSA_CONFIG_PATH`` after the system's ``alsa.conf``. A robot builder does the
same in ``~/.asoundrc`` to give PortAudio names for Pulse or PipeWire devices.

PortAudio lists devices when it is initialised, which ``sounddevice`` does at import;
``moshiface_ros.audio.devices.rescan_devices()`` (terminate + initialise) makes it look
again after :meth:`PulseServer.start` set ``PULSE_SERVER`` and ``ALSA_CONFIG_PATH`` in
this process's environment. It must run while no stream is open, since terminating
PortAudio closes them.

Facts this relies on (measured on the CI image): an idle null-sink monitor delays the
first captured block by up to ~2 s, so a ``pacat`` feeds zeros into every sink from the
start and :meth:`start` waits until the monitors run; ``parec`` must write to a file, never
into an unread pipe (a full pipe loses audio); liveness is checked with ``pactl info``
because containers do not reap zombies.

Never left running: every child (server, feeders, recorders) is started with
``PR_SET_PDEATHSIG`` so it dies with the process that started it, :meth:`stop` kills the
server by its pid file and removes the runtime directory, and the context manager and
the pytest fixtures always call :meth:`stop`.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import subprocess
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Iterator

import numpy as np

PULSE_BINARIES = ("pulseaudio", "pactl", "pacat", "parec")
_PR_SET_PDEATHSIG = 1


def missing_binaries() -> list[str]:
    """The PulseAudio programs that are not installed (tests skip when any is missing)."""
    return [name for name in PULSE_BINARIES if shutil.which(name) is None]


def _die_with_parent() -> None:
    """preexec_fn: the child gets SIGTERM when the thread that started it exits."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


@dataclass(frozen=True)
class Sink:
    """A null sink: a speaker (or a microphone's feed) that plays into nothing."""

    name: str
    rate: int = 48000
    channels: int = 2


@dataclass(frozen=True)
class Microphone:
    """A virtual microphone over the monitor of the sink ``feed``."""

    name: str
    feed: str
    rate: int | None = None  # None: the feed's rate
    channels: int | None = None  # None: the feed's channels


@dataclass(frozen=True)
class Unavailable:
    """A device PortAudio lists but cannot open: an ALSA PCM over a Pulse device that does
    not exist, which fails at open the way an unplugged or busy device does."""

    name: str
    direction: str  # "capture" or "playback"


@dataclass(frozen=True)
class Loopback:
    """Plays ``source`` into ``sink`` after ``latency_ms``, at Pulse ``volume`` (1.0 = unity,
    cubic scale: 0.5 is -18 dB)."""

    source: str
    sink: str
    latency_ms: int = 40
    volume: float = 0.5


def default_devices() -> tuple[list[Sink], list[Microphone]]:
    """A stereo 48 kHz speaker and a mono 48 kHz microphone: the common robot case."""
    return [Sink("speaker", 48000, 2), Sink("mic_feed", 48000, 1)], [Microphone("mic", "mic_feed")]


@dataclass
class Recording:
    """A ``parec`` writing one source into a WAV file until :meth:`stop`."""

    process: subprocess.Popen
    path: Path
    started: float = field(default_factory=time.monotonic)

    def stop(self) -> tuple[np.ndarray, int]:
        """Stop recording; the samples as float32 (frames, channels) and the rate."""
        from moshiface_ros.audio.wav import read_wav

        _terminate(self.process)
        return read_wav(self.path)


def _terminate(process: subprocess.Popen, timeout: float = 5.0) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)


class PulseServer:
    """A private PulseAudio server; use as a context manager or call start()/stop()."""

    def __init__(self, sinks: list[Sink] | None = None, microphones: list[Microphone] | None = None,
                 loopbacks: list[Loopback] | None = None,
                 unavailable: list[Unavailable] | None = None, warmup_s: float = 2.0) -> None:
        default_sinks, default_mics = default_devices()
        self.sinks = list(sinks if sinks is not None else default_sinks)
        self.microphones = list(microphones if microphones is not None else default_mics)
        self.loopbacks = list(loopbacks or [])
        self.unavailable = list(unavailable or [])
        self.warmup_s = warmup_s
        self.runtime_dir: Path | None = None
        self._server: subprocess.Popen | None = None
        self._children: list[subprocess.Popen] = []
        self._plays = 0
        self._saved_env: dict[str, str | None] = {}

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> PulseServer:
        missing = missing_binaries()
        if missing:
            raise RuntimeError(f"PulseAudio is not installed (missing {', '.join(missing)})")
        # A short path: unix socket paths are limited to 108 bytes.
        self.runtime_dir = Path(tempfile.mkdtemp(prefix="mf-pulse-", dir="/tmp"))
        try:
            self._start_server()
            self._wait_alive()
            self._write_alsa_config()
            self._set_environment()
            self._feed_silence()
            self._apply_loopbacks()
            time.sleep(self.warmup_s)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop every child, the server (by its pid file), restore the environment."""
        for child in reversed(self._children):
            _terminate(child)
        self._children.clear()
        if self._server is not None:
            self._kill_by_pid_file()
            _terminate(self._server)
            self._server = None
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._saved_env.clear()
        if self.runtime_dir is not None:
            shutil.rmtree(self.runtime_dir, ignore_errors=True)
            self.runtime_dir = None

    def __enter__(self) -> PulseServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # -- what tests use -----------------------------------------------------------------

    @property
    def socket(self) -> Path:
        assert self.runtime_dir is not None, "server not started"
        return self.runtime_dir / "native"

    @property
    def env(self) -> dict[str, str]:
        """What a client process needs to reach this server and see its devices by name
        (and never to spawn a server of its own: autospawn is off)."""
        assert self.runtime_dir is not None, "server not started"
        return {"PULSE_SERVER": f"unix:{self.socket}",
                "PULSE_CLIENTCONFIG": str(self.runtime_dir / "client.conf"),
                "ALSA_CONFIG_PATH": f"{_system_alsa_conf()}:{self.runtime_dir / 'asound.conf'}"}

    def client_env(self) -> dict[str, str]:
        return {**os.environ, **self.env}

    def alive(self) -> bool:
        return self.pactl("info", check=False).returncode == 0

    def pactl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(["pactl", *args], env=self.client_env(), capture_output=True,
                              text=True, timeout=10, check=check)

    def play(self, sink: str, samples: np.ndarray, rate: int) -> subprocess.Popen:
        """Start playing float samples ((frames, channels) or mono) into ``sink``; returns the
        ``pacat`` process (wait() for the end). Never blocks: pacat reads a file, since
        writing seconds of audio into its stdin pipe would wait for it to play."""
        assert self.runtime_dir is not None, "server not started"
        array = np.asarray(samples, np.float32)
        array = array[:, np.newaxis] if array.ndim == 1 else array
        pcm = (np.clip(array, -1.0, 1.0) * 32767.0).round().astype("<i2")
        self._plays += 1
        raw = self.runtime_dir / f"play-{self._plays}.raw"
        raw.write_bytes(pcm.tobytes())
        cmd = ["pacat", "--playback", "-d", sink, "--raw", "--format=s16le", f"--rate={rate}",
               f"--channels={array.shape[1]}", "--latency-msec=20"]
        with open(raw, "rb") as source:
            return self._spawn(cmd, stdin=source)

    def record(self, source: str, path: Path, rate: int, channels: int) -> Recording:
        """Record ``source`` (e.g. ``speaker.monitor``) into a float WAV file at ``path``."""
        cmd = ["parec", "-d", source, "--file-format=wav", "--format=float32le", f"--rate={rate}",
               f"--channels={channels}", "--latency-msec=20", str(path)]
        return Recording(self._spawn(cmd), Path(path))

    # -- internals ----------------------------------------------------------------------

    def _spawn(self, cmd: list[str], **kwargs) -> subprocess.Popen:
        process = subprocess.Popen(cmd, env=self.client_env(), preexec_fn=_die_with_parent,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kwargs)
        self._children.append(process)
        return process

    def _start_server(self) -> None:
        assert self.runtime_dir is not None
        modules = [f"module-native-protocol-unix auth-anonymous=1 socket={self.socket}"]
        sinks = {sink.name: sink for sink in self.sinks}
        for sink in self.sinks:
            modules.append(f"module-null-sink sink_name={sink.name} rate={sink.rate} "
                           f"channels={sink.channels}")
        for mic in self.microphones:
            feed = sinks[mic.feed]
            modules.append(f"module-remap-source source_name={mic.name} master={mic.feed}.monitor "
                           f"rate={mic.rate or feed.rate} channels={mic.channels or feed.channels}")
        cmd = ["pulseaudio", "--daemonize=no", "--system=false", "--exit-idle-time=-1", "-n",
               "--use-pid-file=yes", "--disallow-exit", "--log-target=file:"
               f"{self.runtime_dir / 'pulse.log'}"]
        for module in modules:
            cmd += ["-L", module]
        env = {**os.environ, "XDG_RUNTIME_DIR": str(self.runtime_dir),
               "HOME": str(self.runtime_dir), "PULSE_SERVER": f"unix:{self.socket}"}
        self._server = subprocess.Popen(cmd, env=env, preexec_fn=_die_with_parent,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def _wait_alive(self, timeout_s: float = 10.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._server is not None and self._server.poll() is not None:
                break
            if self.socket.exists() and self.alive():
                return
            time.sleep(0.05)
        log = (self.runtime_dir / "pulse.log") if self.runtime_dir else None
        detail = log.read_text()[-2000:] if log and log.exists() else ""
        raise RuntimeError(f"PulseAudio did not start:\n{detail}")

    def _write_alsa_config(self) -> None:
        """One ALSA PCM per Pulse device, so PortAudio lists them by name."""
        assert self.runtime_dir is not None
        blocks = []
        for sink in self.sinks:
            blocks.append(_alsa_pcm(sink.name, "playback", sink.name, f"speaker {sink.name}"))
        for mic in self.microphones:
            blocks.append(_alsa_pcm(mic.name, "capture", mic.name, f"microphone {mic.name}"))
        for device in self.unavailable:
            blocks.append(_alsa_pcm(device.name, device.direction, f"{device.name}-absent",
                                    f"unavailable {device.name}"))
        (self.runtime_dir / "asound.conf").write_text("\n".join(blocks))
        (self.runtime_dir / "client.conf").write_text("autospawn = no\n")

    def _set_environment(self) -> None:
        for key, value in self.env.items():
            self._saved_env.setdefault(key, os.environ.get(key))
            os.environ[key] = value

    def _feed_silence(self) -> None:
        """A pacat playing zeros into every sink keeps its monitor running (no 2 s stall)."""
        for sink in self.sinks:
            cmd = ["pacat", "--playback", "-d", sink.name, "--raw", "--format=s16le",
                   f"--rate={sink.rate}", f"--channels={sink.channels}", "--latency-msec=50"]
            self._spawn(cmd, stdin=_zeros())

    def _apply_loopbacks(self) -> None:
        for loop in self.loopbacks:
            self.load_loopback(loop)

    def load_loopback(self, loop: Loopback) -> str:
        """Start an echo path now; returns the module id (for :meth:`unload_module`)."""
        module = self.pactl("load-module", "module-loopback", f"source={loop.source}",
                            f"sink={loop.sink}", f"latency_msec={loop.latency_ms}",
                            "source_dont_move=true", "sink_dont_move=true").stdout.strip()
        current = None
        for line in self.pactl("list", "sink-inputs").stdout.splitlines():
            line = line.strip()
            if line.startswith("Sink Input #"):
                current = line.removeprefix("Sink Input #")
            elif line == f"Owner Module: {module}" and current is not None:
                self.pactl("set-sink-input-volume", current, str(int(loop.volume * 65536)))
        return module

    def unload_module(self, module: str) -> None:
        self.pactl("unload-module", module)

    def _kill_by_pid_file(self) -> None:
        assert self.runtime_dir is not None
        pid_file = self.runtime_dir / "pulse" / "pid"
        try:
            pid = int(pid_file.read_text().strip())
        except (OSError, ValueError):
            return
        if self._server is not None and pid == self._server.pid:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass


@contextmanager
def pulse_or_skip(sinks: list[Sink] | None = None, microphones: list[Microphone] | None = None,
                  **kwargs) -> Iterator[PulseServer]:
    """For pytest fixtures: a running server whose devices PortAudio sees, or a skip that
    says what is missing. Always stopped afterwards.

    PortAudio is not re-initialised after the server stops: with no server to reach, the
    ALSA pulse plugin might start a user's own PulseAudio (autospawn). The next fixture
    rescans after starting its own server.
    """
    import pytest

    missing = missing_binaries()
    if missing:
        pytest.skip(f"needs PulseAudio ({', '.join(missing)} not found; "
                    "apt-get install pulseaudio pulseaudio-utils)")
    try:
        import sounddevice  # noqa: F401
    except OSError as exc:
        pytest.skip(f"needs PortAudio ({exc}; apt-get install libportaudio2)")
    from moshiface_ros.audio.devices import rescan_devices

    with PulseServer(sinks, microphones, **kwargs) as server:
        rescan_devices()
        yield server


def _zeros():
    """An endless source of zero bytes for a feeder's stdin."""
    return open("/dev/zero", "rb")


def _system_alsa_conf() -> str:
    for candidate in ("/usr/share/alsa/alsa.conf", "/etc/alsa/alsa.conf"):
        if Path(candidate).exists():
            return candidate
    return "/usr/share/alsa/alsa.conf"


def _alsa_pcm(name: str, direction: str, device: str, description: str) -> str:
    """A one-direction ALSA PCM over a Pulse device (``asym`` hides the other direction)."""
    return (f"pcm.{name} {{\n  type asym\n  {direction}.pcm {{ type pulse device \"{device}\" }}\n"
            f"  hint {{ show on description \"{description}\" }}\n}}\n")
