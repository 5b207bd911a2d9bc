"""The ROS environment `make test` runs in: the installed package (current source, generated
messages), DDS held on this machine (private network namespace as root, Fast DDS on
127.0.0.1 only), and the rules that decide skip or failure."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

import ros_harness
from ros_harness import RosProcess, require_ros

REPO = Path(__file__).resolve().parent.parent
FASTDDS = "{http://www.eprosima.com/XMLSchemas/fastRTPS_Profiles}"

# A participant that lists the UDP sockets it bound: (address, port) of each.
PROBE = r"""
import json, os, time, rclpy
from std_msgs.msg import String
rclpy.init()
node = rclpy.create_node("moshiface_network_probe")
node.create_publisher(String, "/moshiface_network_probe", 10)
time.sleep(1.0)
inodes = set()
for fd in os.listdir("/proc/self/fd"):
    try:
        target = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        continue
    if target.startswith("socket:["):
        inodes.add(target[8:-1])
bound = []
for name in ("udp", "udp6"):
    for line in open(f"/proc/self/net/{name}").read().splitlines()[1:]:
        fields = line.split()
        if fields[9] in inodes:
            address, port = fields[1].split(":")
            bound.append([name, address, int(port, 16)])
print("BOUND " + json.dumps(bound), flush=True)
node.destroy_node()
rclpy.shutdown()
"""


def _ipv4(hex_le: str) -> str:
    """/proc/net/udp's little-endian hex IPv4 address as dotted quad."""
    return ".".join(str(int(hex_le[i:i + 2], 16)) for i in (6, 4, 2, 0))


def _unshare_possible() -> bool:
    try:
        return subprocess.run(["unshare", "-n", "true"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def test_as_root_the_tests_have_only_loopback():
    """Root can make a network namespace, so the run must be in one: no interface but `lo`,
    and `lo` up (servers and DDS on 127.0.0.1 work)."""
    if os.geteuid() != 0:
        pytest.skip("not root: no private network namespace (DDS is held to 127.0.0.1 by its profile)")
    if not _unshare_possible():
        pytest.skip("`unshare -n` is not permitted here (a container without CAP_SYS_ADMIN)")
    if not ros_harness.ros_required():
        pytest.skip("run through `make test` (scripts/with_ros.sh) to get the private namespace")
    names = [name for _, name in socket.if_nameindex()]
    assert [n for n in names if n != "lo"] == [], f"non-loopback interfaces in the test run: {names}"
    assert os.environ.get("MOSHIFACE_PRIVATE_NETWORK") == "1"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as server, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        server.bind(("127.0.0.1", 0))
        server.settimeout(2.0)
        client.sendto(b"ping", server.getsockname())
        assert server.recvfrom(16)[0] == b"ping"


def test_ros_environment_names_fast_dds_on_loopback_only():
    require_ros()
    assert os.environ.get("RMW_IMPLEMENTATION") == "rmw_fastrtps_cpp"
    assert os.environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE") == "LOCALHOST"
    profile = Path(os.environ.get("FASTRTPS_DEFAULT_PROFILES_FILE", ""))
    assert profile.is_file(), f"FASTRTPS_DEFAULT_PROFILES_FILE={profile} is not a file"
    assert profile.read_bytes() == (REPO / "config" / "fastdds_localhost.xml").read_bytes()

    root = ET.parse(profile).getroot()
    transports = {d.findtext(f"{FASTDDS}transport_id"): d for d in root.iter(f"{FASTDDS}transport_descriptor")}
    (participant,) = [p for p in root.iter(f"{FASTDDS}participant") if p.get("is_default_profile") == "true"]
    rtps = participant.find(f"{FASTDDS}rtps")
    assert rtps.findtext(f"{FASTDDS}useBuiltinTransports").strip() == "false"
    used = [t.text for t in rtps.iter(f"{FASTDDS}transport_id")]
    assert used, "the default participant names no transport"
    for transport_id in used:
        descriptor = transports[transport_id]
        assert descriptor.findtext(f"{FASTDDS}type") == "UDPv4"
        allowed = [a.text for a in descriptor.iter(f"{FASTDDS}address")]
        assert allowed == ["127.0.0.1"], (transport_id, allowed)


def test_a_participant_listens_on_loopback_only(tmp_path):
    """What Fast DDS really does with that environment: the sockets a participant receives
    discovery and data on (the well-known ports 7400 + 250 x domain + ...) are bound to
    127.0.0.1, and no socket is bound to any other interface's address."""
    require_ros()
    with RosProcess([sys.executable, "-c", PROBE], tmp_path / "probe.log") as probe:
        probe.wait_for(r"BOUND ", timeout=60)
        probe.process.wait(30)
    line = next(ln for ln in probe.text().splitlines() if ln.startswith("BOUND "))
    bound = json.loads(line.removeprefix("BOUND "))
    assert all(kind == "udp" for kind, _, _ in bound), bound
    addresses = [(_ipv4(address), port) for _, address, port in bound]
    domain = int(os.environ.get("ROS_DOMAIN_ID", "0") or 0)
    well_known = [(a, p) for a, p in addresses if 7400 + 250 * domain <= p < 7400 + 250 * (domain + 1)]
    assert well_known and all(a == "127.0.0.1" for a, _ in well_known), addresses
    assert all(a in ("127.0.0.1", "0.0.0.0") for a, _ in addresses), addresses


def _digest(directory: Path) -> dict[str, str]:
    return {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.rglob("*.py")) if "__pycache__" not in p.parts}


def test_the_tests_import_the_installed_current_source():
    """The package the ROS tests import is the CMake install (it has the generated messages),
    and its Python files are exactly the working tree's: `make test` re-installs every time."""
    require_ros()
    import moshiface_ros
    from moshiface_ros.msg import AudioChunk, FaceFrame  # noqa: F401

    installed = Path(moshiface_ros.__file__).resolve().parent
    assert installed != (REPO / "moshiface_ros").resolve(), "the source tree shadows the install"
    source = _digest(REPO / "moshiface_ros")
    ours = {k: v for k, v in _digest(installed).items() if not k.startswith(("msg/", "_moshiface_ros_s"))}
    assert ours == source, sorted(set(ours.items()) ^ set(source.items()))[:10]


def test_missing_ros_fails_when_required_and_skips_otherwise(tmp_path):
    """The switch itself, in a child pytest that cannot import the messages (the source tree
    first on its path): a skip without MOSHIFACE_REQUIRE_ROS, an error with it."""
    test = tmp_path / "test_needs_ros.py"
    test.write_text("import ros_harness\n\ndef test_it():\n    ros_harness.require_ros()\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "test")])}
    for required, expected in (("0", "1 skipped"), ("1", "MOSHIFACE_REQUIRE_ROS=1 but")):
        env["MOSHIFACE_REQUIRE_ROS"] = required
        result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                                 "-c", os.devnull, "-rs", str(test)], capture_output=True, text=True,
                                env=env, cwd=tmp_path, timeout=120)
        assert expected in result.stdout + result.stderr, result.stdout + result.stderr
        assert (result.returncode == 0) == (required == "0")
