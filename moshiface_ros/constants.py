"""The numbers that define the conversation's real time, and the defaults every entry
point shares (the runner, the nodes, the server, training and evaluation).

This module imports nothing from the package, so any layer may import it. Change a value
here and every command line, node parameter and data file follows; nothing else in the
package spells these numbers out.
"""

from __future__ import annotations

NS_PER_S = 1_000_000_000

# Audio: Mimi's rate and one model step of it (80 ms, 12.5 steps per second).
SAMPLE_RATE = 24_000
FRAME_SIZE = 1920
STEP_NS = FRAME_SIZE * NS_PER_S // SAMPLE_RATE  # 80 ms

# Face: FLAME frames at 25 fps, two per model step; N face tokens per step from a codebook of K.
FACE_FPS = 25
FACE_FRAME_NS = NS_PER_S // FACE_FPS  # 40 ms
FACE_FRAMES_PER_STEP = STEP_NS // FACE_FRAME_NS  # 2
FACE_TOKENS = 8
FACE_CARD = 256

# FLAME topology: the 2020/2023 mesh, and VHAP's extension with 120 teeth vertices.
FLAME_VERTICES = 5023
VHAP_VERTICES = 5143

# One seed default for every entry point that samples (the runner, the demo, the nodes).
DEFAULT_SEED = 42

# Delay from a step's stamp to the moment its audio and face are presented. Through a sound
# server a capture chunk arrives ~120 ms after its stamp and the speaker reads ~110 ms ahead,
# so 200 ms muted the robot (docs/audio.md): 300 ms is the default of every node and the runner.
PRESENTATION_DELAY_MS = 300.0
