"""Finding sound devices by name or number, and saying clearly when that fails.

A robot builder names a microphone or speaker the way ``python -m sounddevice`` lists it:
its number, or (part of) its name. Numbers change when devices are plugged in, so names
are the robust choice; a name matches exactly first, then as a case-insensitive substring
(a unique one). Every failure is a one-line :class:`MoshifaceError` that lists the devices
that do exist for that direction, because "device not found" alone sends people to a
terminal to find out what the names are.

PortAudio enumerates devices once, when it is initialised (``sounddevice`` does that at
import). A sound server started later, or a device plugged in later, stays invisible until
:func:`rescan_devices` re-initialises PortAudio, which closes every stream this process
has open: call it only before opening streams.

``sounddevice`` itself needs the PortAudio library; when it is missing the import fails,
and :func:`sounddevice_module` turns that into a user error naming the package to install.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Literal

from moshiface_ros.errors import MoshifaceError

__all__ = ["DeviceInfo", "Direction", "list_devices", "find_device", "describe_devices",
           "open_failed", "rescan_devices", "sounddevice_module", "parse_device", "parse_latency"]

Direction = Literal["input", "output"]


def parse_device(value: str) -> str | int | None:
    """A device as a robot builder writes it (a node parameter, a command-line option):
    "" is the default device, digits a device number, anything else a name."""
    value = value.strip()
    if not value:
        return None
    return int(value) if value.isdigit() else value


def parse_latency(value: str) -> str | float:
    """PortAudio's suggested latency as written: "low", "high", or seconds ("0.05")."""
    value = value.strip().lower()
    if value in ("low", "high"):
        return value
    try:
        seconds = float(value)
    except ValueError:
        raise MoshifaceError(f"latency must be 'low', 'high' or seconds, got '{value}'") from None
    if not seconds > 0:
        raise MoshifaceError(f"latency must be positive, got {seconds}")
    return seconds


def sounddevice_module() -> ModuleType:
    """``import sounddevice``, or a clear error when PortAudio is not installed."""
    try:
        import sounddevice
    except OSError as exc:  # sounddevice raises OSError when libportaudio is absent
        raise MoshifaceError(f"audio devices need the PortAudio library ({exc}); install it, "
                             "e.g. apt-get install libportaudio2") from exc
    return sounddevice


@dataclass(frozen=True)
class DeviceInfo:
    """What PortAudio says about one device."""

    index: int
    name: str
    hostapi: str
    max_input_channels: int
    max_output_channels: int
    default_samplerate: float

    def channels(self, direction: Direction) -> int:
        return self.max_input_channels if direction == "input" else self.max_output_channels

    def stream_format(self, direction: Direction, sample_rate: int, channels: int) -> tuple[int, int]:
        """The rate and channel count to open this device with: those asked for (0: the
        device's own rate, and at most 2 channels, since we downmix or duplicate anyway)."""
        available = self.channels(direction)
        rate = int(sample_rate or round(self.default_samplerate))
        count = int(channels or min(available, 2))
        if count > available:
            raise MoshifaceError(f"{direction} device '{self.name}' has {available} channel(s), "
                                 f"{count} were asked for")
        return rate, count

    def describe(self) -> str:
        return (f"{self.index} '{self.name}' ({self.hostapi}, {self.max_input_channels} in, "
                f"{self.max_output_channels} out, {self.default_samplerate:g} Hz)")


def rescan_devices() -> None:
    """Make PortAudio enumerate the devices again (closes this process's open streams)."""
    sd = sounddevice_module()
    sd._terminate()
    sd._initialize()


def list_devices(direction: Direction | None = None) -> list[DeviceInfo]:
    """Every device PortAudio knows, or only those with channels in ``direction``."""
    sd = sounddevice_module()
    hostapis = [api["name"] for api in sd.query_hostapis()]
    devices = [DeviceInfo(int(d["index"]), str(d["name"]), hostapis[d["hostapi"]],
                          int(d["max_input_channels"]), int(d["max_output_channels"]),
                          float(d["default_samplerate"]))
               for d in sd.query_devices()]
    if direction is None:
        return devices
    return [d for d in devices if d.channels(direction) > 0]


def describe_devices(direction: Direction) -> str:
    """One line listing the devices of a direction, for error messages."""
    devices = list_devices(direction)
    if not devices:
        return f"there are no {direction} devices (is a sound server running?)"
    return f"{direction} devices that exist: " + "; ".join(d.describe() for d in devices)


def find_device(spec: str | int | None, direction: Direction) -> DeviceInfo:
    """The device a user named: None/""/"default" is the system default, an int (or a
    string of digits) an index, anything else an exact or unique partial name."""
    devices = list_devices(direction)
    if not devices:
        raise MoshifaceError(f"no {direction} device found: {describe_devices(direction)}")
    if spec is None or (isinstance(spec, str) and spec.strip().lower() in ("", "default")):
        return _default_device(devices, direction)
    if isinstance(spec, int) or (isinstance(spec, str) and spec.strip().isdigit()):
        return _by_index(int(spec), devices, direction)
    return _by_name(str(spec).strip(), devices, direction)


def _default_device(devices: list[DeviceInfo], direction: Direction) -> DeviceInfo:
    sd = sounddevice_module()
    index = sd.default.device[0 if direction == "input" else 1]
    for device in devices:
        if device.index == index:
            return device
    return devices[0]  # no default set: the first device that has channels


def _by_index(index: int, devices: list[DeviceInfo], direction: Direction) -> DeviceInfo:
    for device in devices:
        if device.index == index:
            return device
    raise MoshifaceError(f"there is no {direction} device number {index}; "
                         f"{describe_devices(direction)}")


def _by_name(name: str, devices: list[DeviceInfo], direction: Direction) -> DeviceInfo:
    exact = [d for d in devices if d.name == name]
    if len(exact) == 1:
        return exact[0]
    partial = exact or [d for d in devices if name.lower() in d.name.lower()]
    if len(partial) == 1:
        return partial[0]
    if not partial:
        raise MoshifaceError(f"no {direction} device is named '{name}'; "
                             f"{describe_devices(direction)}")
    matches = "; ".join(d.describe() for d in partial)
    raise MoshifaceError(f"{direction} device name '{name}' is ambiguous, it matches: {matches}; "
                         "use a longer name or the number")


def open_failed(device: DeviceInfo, direction: Direction, rate: int, channels: int,
                exc: Exception) -> MoshifaceError:
    """The error for a device that exists but would not open (busy, gone, or a format it
    refuses), with PortAudio's reason and the devices that exist."""
    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return MoshifaceError(f"{direction} device {device.index} '{device.name}' could not be opened "
                          f"at {rate} Hz with {channels} channel(s) (busy, disconnected or "
                          f"unsupported format: {reason}); {describe_devices(direction)}")
