"""Each node's parameters and defaults, in one place (no rclpy needed to read them).

The nodes declare exactly these; config/*.yaml must list exactly these (a test checks).
"""

MOSHIFACE_NODE = {
    "model": "tiny",  # tiny | checkpoint directory | hf:OWNER/NAME
    "device": "auto",  # auto | cpu | cuda | cuda:N
    "dtype": "auto",  # auto | float32 | bfloat16 | float16
    "cuda_graphs": True,
    "seed": 42,
    "temperature": 0.8,
    "text_temperature": 0.7,
    "top_k": 250,
    "text_top_k": 25,
    "frame_id": "robot_head",
    "threads": 0,  # 0: 1 for the tiny model, torch's default otherwise
}

AUDIO_CAPTURE: dict = {}

AUDIO_PLAYBACK: dict = {}

FACE_TRACKER: dict = {}

RETARGET: dict = {}

# node name -> its parameters; each node's config file lists exactly these (a test checks).
NODES = {
    "moshiface_node": MOSHIFACE_NODE,
    "audio_capture": AUDIO_CAPTURE,
    "audio_playback": AUDIO_PLAYBACK,
    "face_tracker": FACE_TRACKER,
    "retarget": RETARGET,
}
