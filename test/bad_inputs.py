"""Bad user inputs shared by the runner and command-line tests: how to make each one, and
the words its one-line error must contain."""

from pathlib import Path

import numpy as np
import scipy.io.wavfile

from moshiface_ros.audio.synth import synthetic_speech

RATE = 24000


def _missing(tmp: Path) -> Path:
    return tmp / "no-such-file.wav"


def _text_file(tmp: Path) -> Path:
    path = tmp / "notes.wav"
    path.write_text("this is not audio, just some words\n")
    return path


def _empty_wav(tmp: Path) -> Path:
    path = tmp / "empty.wav"
    scipy.io.wavfile.write(path, RATE, np.zeros(0, np.float32))
    return path


def _nan_wav(tmp: Path) -> Path:
    path = tmp / "nan.wav"
    samples = synthetic_speech(1.0, RATE)
    samples[500:600] = np.nan
    scipy.io.wavfile.write(path, RATE, samples)
    return path


def _too_slow_wav(tmp: Path) -> Path:
    path = tmp / "slow.wav"  # 1 s at 4 kHz: below the supported 8 kHz (it once made 100 steps a chunk)
    scipy.io.wavfile.write(path, 4000, synthetic_speech(1.0, 4000))
    return path


BAD_INPUTS = {
    "missing file": (_missing, ["no-such-file.wav", "does not exist"]),
    "not audio": (_text_file, ["notes.wav", "not a WAV"]),
    "empty wav": (_empty_wav, ["empty.wav", "empty"]),
    "nan samples": (_nan_wav, ["nan.wav", "NaN"]),
    "unsupported rate": (_too_slow_wav, ["slow.wav", "4000 Hz", "not supported"]),
}
