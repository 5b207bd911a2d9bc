"""Hostile and malformed files of every kind the package reads: each is refused with one
line, within 5 s and 500 MB.

Each case runs its loader in a fresh Python process, so its peak memory (``ru_maxrss``) is
its own; the time is that of the load call alone, the memory is the peak above the
process's footprint after its imports. Every case prints its figures (``pytest -s``).
The files are small and built here byte by byte: a pickle claiming a huge memo index,
shared and cyclic containers, a length claim, a YAML alias bomb, deep JSON, a safetensors
header claiming terabytes, a tampered training state that would run code, WAV and .npy
headers that lie.
"""

from __future__ import annotations

import json
import os
import pickle
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
MAX_SECONDS = 5.0
MAX_EXTRA_MB = 500.0

LOADERS = {
    "pickle": "from moshiface_ros.flame.model import FlameModel; load = FlameModel.load",
    "head": "from moshiface_ros.retarget.head import load_head as load",
    "regions": "from moshiface_ros.regions import load_regions as load",
    "codec": "from moshiface_ros.face_codec.checkpoint import load_codec as load",
    "train_state": "from moshiface_ros.face_codec.checkpoint import load_train_state as load",
    "face_lm": "from moshiface_ros.face_lm.weights import read_face_section as load",
    "wav": "from moshiface_ros.audio.wav import read_wav as load",
    "npy": "from moshiface_ros.runner.inputs import read_user_face as load",
}

CHILD = r"""
import json, resource, sys, time
from pathlib import Path
from moshiface_ros.errors import MoshifaceError
{import_line}
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
try:
    load(Path(sys.argv[1]))
    outcome, line = "loaded", ""
except MoshifaceError as exc:
    outcome, line = "refused", str(exc)
except BaseException as exc:
    outcome, line = "crashed", f"{{type(exc).__name__}}: {{exc}}"[:300]
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({{"outcome": outcome, "line": line, "seconds": seconds,
                  "peak_mb": peak / 1024, "extra_mb": (peak - base) / 1024}}))
"""


def run_case(kind: str, path: Path, name: str) -> dict:
    """Loads ``path`` with the ``kind`` loader in a child process; returns its figures."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", CHILD.format(import_line=LOADERS[kind]), str(path)],
                          capture_output=True, text=True, timeout=120, env=env, cwd=path.parent)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"\n{kind:11s} {name:24s} {result['outcome']:8s} {result['seconds']:6.3f} s  "
          f"peak {result['peak_mb']:6.0f} MB (+{result['extra_mb']:5.1f} MB)  {result['line'][:110]}")
    return result


def assert_refused(result: dict) -> None:
    assert result["outcome"] == "refused", result
    assert result["line"] and "\n" not in result["line"] and len(result["line"]) <= 600
    assert result["seconds"] <= MAX_SECONDS, result
    assert result["extra_mb"] <= MAX_EXTRA_MB, result


# -- the files -----------------------------------------------------------------------------


def _pickle_shared(levels: int, width: int) -> bytes:
    """[0], then levels of lists holding the previous list ``width`` times (memo gets):
    rebuilt as a tree it is width**levels lists."""
    out = bytearray(b"\x80\x02](K\x00eq\x00")
    for i in range(1, levels + 1):
        out += b"](" + (b"h" + bytes([i - 1])) * width + b"eq" + bytes([i])
    return bytes(out + b".")


PICKLES = {
    "memo_index_2**30": b"\x80\x02N" + b"r" + struct.pack("<I", 2 ** 30) + b".",  # 9 bytes
    "shared_2**60_tree": _pickle_shared(60, 2),
    "shared_wide_10**20": _pickle_shared(20, 10),  # loads (no tree): refused as not a dict
    "cyclic_list": b"\x80\x02]q\x00h\x00a.",
    "deep_nesting_100000": b"\x80\x02" + b"]" * 100_000 + b"a" * 99_999 + b".",
    "length_claim_1TB": b"\x80\x04\x8e" + struct.pack("<Q", 2 ** 40) + b".",
    "truncated": pickle.dumps({"v_template": [1.0] * 100}, protocol=2)[:-20],
    "empty": b"",
}

ALIAS_BOMB = "".join(
    [f"{chr(97 + i)}: &{chr(97 + i)} [" + ",".join([f"*{chr(96 + i)}" if i else '"lol"'] * 9) + "]\n"
     for i in range(9)])

YAMLS = {
    "alias_bomb": ALIAS_BOMB,
    "recursive_anchor": "name: &a [*a]\n",
    "deep_nesting": "name: " + "[" * 20_000 + "]" * 20_000 + "\n",
    "malformed": "name: head\nactuators: [a, b\ntopology: c\n",
    "binary": "\x00\x01\x02\xff",
    # within the budgets (63 aliases, ~61,000 nodes), but an error message that repr()s it is 300 kB
    "aliased_value_in_error": "name: [&b [&a [" + ", ".join(["1.0"] * 60) + "], "
    + ", ".join(["*a"] * 39) + "], " + ", ".join(["*b"] * 24) + "]\n",
}


@pytest.mark.parametrize("name", sorted(PICKLES))
def test_hostile_pickles_are_refused_in_bounded_time_and_memory(tmp_path, name):
    path = tmp_path / "generic_model.pkl"
    path.write_bytes(PICKLES[name])
    assert_refused(run_case("pickle", path, name))


def test_a_pickle_that_would_run_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "generic_model.pkl"
    path.write_bytes(pickle.dumps(_Payload(marker), protocol=2))
    result = run_case("pickle", path, "code_execution")
    assert_refused(result)
    assert "refusing" in result["line"]
    assert not marker.exists()


@pytest.mark.parametrize("name", sorted(YAMLS))
@pytest.mark.parametrize("kind", ["head", "regions"])
def test_hostile_yaml_is_refused_in_bounded_time_and_memory(tmp_path, kind, name):
    path = tmp_path / "file.yaml"
    path.write_text(YAMLS[name], encoding="latin-1")
    result = run_case(kind, path, name)
    assert_refused(result)
    if name == "malformed":  # the parser's position is kept
        assert "line 3, column" in result["line"], result["line"]
    if name == "alias_bomb":
        assert len(ALIAS_BOMB) < 500 and "alias" in result["line"]


class _Payload:
    """Unpickling this calls ``Path.touch(marker)``: a real side effect a loader must not allow."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_tampered_train_state_runs_no_code(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "train_state.pt"
    torch.save({"epoch": 1, "optimizer": _Payload(marker)}, path)
    torch.load(path, weights_only=False)  # what the trainers did: the payload is real
    assert marker.exists()
    marker.unlink()
    result = run_case("train_state", path, "code_execution")
    assert_refused(result)
    assert not marker.exists()


def _safetensors_with_header(header: bytes, claimed: int | None = None) -> bytes:
    return struct.pack("<Q", claimed if claimed is not None else len(header)) + header


def _codec_dir(tmp_path: Path, config: object, weights: bytes | None = None) -> Path:
    from moshiface_ros.face_codec.checkpoint import save_codec
    from moshiface_ros.face_codec.stream import tiny_codec

    directory = tmp_path / "codec"
    save_codec(tiny_codec(vertices=30), directory)
    if config is not None:
        (directory / "config.json").write_text(config if isinstance(config, str) else json.dumps(config))
    if weights is not None:
        (directory / "model.safetensors").write_bytes(weights)
    return directory


def _huge_config(tmp_path: Path) -> dict:
    from moshiface_ros.face_codec.checkpoint import save_codec
    from moshiface_ros.face_codec.stream import tiny_codec

    save_codec(tiny_codec(vertices=30), tmp_path / "probe")
    config = json.loads((tmp_path / "probe" / "config.json").read_text())
    config["vertices"] = 2_000_000_000
    return config


CODEC_CASES = {
    "config_deep_json": lambda tmp: _codec_dir(tmp, "[" * 100_000 + "]" * 100_000),
    "config_not_json": lambda tmp: _codec_dir(tmp, "{vertices: 30"),
    "config_2e9_vertices": lambda tmp: _codec_dir(tmp, _huge_config(tmp)),
    "safetensors_1TB_header": lambda tmp: _codec_dir(tmp, None, _safetensors_with_header(b"{}", 2 ** 40)),
    "safetensors_garbage": lambda tmp: _codec_dir(tmp, None, b"\x00" * 64),
    "safetensors_1TB_tensor": lambda tmp: _codec_dir(tmp, None, _safetensors_with_header(json.dumps(
        {"scale": {"dtype": "F32", "shape": [2 ** 38], "data_offsets": [0, 2 ** 40]}}).encode())),
}


@pytest.mark.parametrize("name", sorted(CODEC_CASES))
def test_hostile_codec_checkpoints_are_refused(tmp_path, name):
    assert_refused(run_case("codec", CODEC_CASES[name](tmp_path), name))


def test_hostile_train_state_files_are_refused(tmp_path):
    for name, data in {"zip_garbage": b"PK\x03\x04" + b"\x00" * 100, "empty": b"",
                       "not_a_mapping": None}.items():
        path = tmp_path / f"{name}.pt"
        if data is None:
            torch.save([1, 2, 3], path)
        else:
            path.write_bytes(data)
        assert_refused(run_case("train_state", path, name))


def test_deep_json_in_a_face_lm_checkpoint_is_refused(tmp_path):
    (tmp_path / "config.json").write_text("[" * 100_000 + "]" * 100_000)
    assert_refused(run_case("face_lm", tmp_path, "config_deep_json"))


def _wav(fmt_tag: int = 3, channels: int = 1, rate: int = 24000, bits: int = 32, data: bytes = b"\x00" * 64,
         data_size: int | None = None, riff_size: int | None = None) -> bytes:
    block = channels * bits // 8
    fmt = struct.pack("<HHIIHH", fmt_tag, channels, rate, (rate * block) & 0xFFFFFFFF, block & 0xFFFF, bits)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"data" + struct.pack("<I", len(data) if data_size is None else data_size) + data
    return b"RIFF" + struct.pack("<I", len(body) if riff_size is None else riff_size) + body


WAVS = {
    "data_size_4GB": _wav(data_size=0xFFFFFFF0, riff_size=0xFFFFFFF0),
    "channels_65535": _wav(channels=65535, bits=16, fmt_tag=1),
    "rate_0": _wav(rate=0),
    "truncated_header": _wav()[:30],
    "not_riff": b"JUNK" + b"\x00" * 60,
    "empty": b"",
}


@pytest.mark.parametrize("name", sorted(WAVS))
def test_hostile_wavs_are_refused(tmp_path, name):
    path = tmp_path / "user.wav"
    path.write_bytes(WAVS[name])
    result = run_case("wav", path, name)
    if name == "data_size_4GB" and result["outcome"] == "loaded":
        # sizes of 0xFFFFFFFF-ish are how streaming writers leave a WAV: reading the samples
        # that are there is the documented repair, as long as it stays bounded
        assert result["seconds"] <= MAX_SECONDS and result["extra_mb"] <= MAX_EXTRA_MB
        return
    assert_refused(result)


def _npy(header: dict, data: bytes = b"") -> bytes:
    text = repr(header).encode()
    text += b" " * (63 - (len(text) + 10) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text + data


NPYS = {
    "shape_claims_60TB": _npy({"descr": "<f4", "fortran_order": False, "shape": (10 ** 9, 5023, 3)}),
    "object_dtype_pickle": _npy({"descr": "|O", "fortran_order": False, "shape": (1,)}, pickle.dumps([1])),
    "corrupt_header": b"\x93NUMPY\x01\x00\x10\x00{'descr': <f4!!\n",
    "truncated_data": _npy({"descr": "<f4", "fortran_order": False, "shape": (4, 30, 3)}, b"\x00" * 40),
    "empty": b"",
}


@pytest.mark.parametrize("name", sorted(NPYS))
def test_hostile_npy_motion_files_are_refused(tmp_path, name):
    path = tmp_path / "motion.npy"
    path.write_bytes(NPYS[name])
    assert_refused(run_case("npy", path, name))


def test_the_suites_files_load_when_whole(tmp_path):
    """The loaders under test do load good files (so a refusal above is about the damage)."""
    from moshiface_ros.face_codec.checkpoint import load_codec, load_train_state

    directory = _codec_dir(tmp_path, None)
    assert load_codec(directory).config.vertices == 30
    torch.save({"epoch": 3, "rng": torch.get_rng_state(), "history": [{"loss": 1.0}]}, tmp_path / "s.pt")
    assert load_train_state(tmp_path / "s.pt")["epoch"] == 3
    np.save(tmp_path / "m.npy", np.zeros((4, 30, 3), np.float32))
    assert run_case("npy", tmp_path / "m.npy", "good")["outcome"] == "loaded"
