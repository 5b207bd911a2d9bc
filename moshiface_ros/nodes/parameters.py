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
    "codec": "tiny",  # face codec of a Moshi-Face model: tiny | causal codec checkpoint directory
    "frame_id": "robot_head",
    "threads": 0,  # 0: 1 for the tiny model, torch's default otherwise
}

AUDIO_CAPTURE = {
    "device": "",  # input device: name (exact or a unique part), number, or "" for the default
    "sample_rate": 0,  # Hz to open the device at; 0: the device's default rate
    "channels": 0,  # channels to open (downmixed to mono); 0: the device's, at most 2
    "block_ms": 20.0,  # PortAudio block length
    "latency": "low",  # PortAudio suggested latency: "low", "high" or seconds, e.g. "0.05"
    "queue_seconds": 2.0,  # device audio held for a slow publisher before blocks are dropped
    "frame_id": "user_microphone",
    "echo_cancellation": False,  # remove the robot's voice (from /moshiface/robot/audio)
    "presentation_delay_ms": 200.0,  # when robot audio is heard (stamp + this): the echo reference
    "diagnostics_period_s": 1.0,
}

AUDIO_PLAYBACK = {
    "device": "",  # output device: name (exact or a unique part), number, or "" for the default
    "sample_rate": 0,  # Hz to open the device at; 0: the device's default rate
    "channels": 0,  # channels to open (mono copied to all); 0: the device's, at most 2
    "block_ms": 20.0,  # PortAudio block length
    "latency": "high",  # PortAudio suggested latency: "low", "high" or seconds, e.g. "0.05"
    "presentation_delay_ms": 200.0,  # play each chunk at stamp + this (the jitter buffer's target)
    "lag_ms": 0.0,  # latency after the DAC the device does not report (Bluetooth, amplifier DSP)
    "sync_to_stamps": True,  # false: stamps only order chunks; delay counts from arrival
    "capacity_s": 4.0,  # how far ahead of its time a chunk may arrive before it is dropped
    "diagnostics_period_s": 1.0,
}

FACE_TRACKER = {
    "source": "0",  # camera device index, video file or URL, or GStreamer pipeline (has '!')
    "width": 640,  # requested capture size and rate (devices only; 0 = the camera's default)
    "height": 480,
    "camera_fps": 30.0,
    "publish_rate": 25.0,  # FaceFrames per second on /moshiface/user/face
    "max_frame_age": 0.1,  # s: a tracked frame is repeated while its camera frame is younger
    "reopen_interval": 1.0,  # s between attempts to reopen a lost camera
    "loop_file": True,  # a video file source restarts at its end
    "flame_model": "",  # FLAME 2020/2023 pickle, or "synthetic" (stand-in model)
    "embedding": "",  # landmark embedding .npz; "" = config/flame_landmark_embedding.npz
    "teeth": False,  # VHAP's 120 teeth vertices (5,143 vertices)
    "num_expression": 50,  # expression components fitted (FLAME 2023 has 100)
    "num_shape": 100,  # identity components calibrated (of 300)
    "iterations": 4,  # Gauss-Newton iterations per frame
    "focal_length": 0.0,  # camera focal length in pixels; 0 = image width
    "calibration_frames": 5,  # frames the identity is calibrated on
    "filter_min_cutoff": 2.0,  # One-Euro filter: cutoff at rest (Hz)
    "filter_beta": 0.3,  # One-Euro filter: speed coefficient
    "head_pose_in_vertices": False,  # vertices include the head's rotation
    "frame_id": "user_camera",
}

RETARGET = {
    "head_file": "",  # head YAML; "" = the package's config/heads/servo_head.yaml
    "regions_file": "",  # regions YAML overriding the head file's topology.regions; "" = the head file's
    "presentation_delay_ms": 200.0,  # stamp -> presentation; equal to every presenting node's
    "command_mode": "forward",  # forward: std_msgs/Float64MultiArray | trajectory: trajectory_msgs/JointTrajectory
    "command_topic": "/head_controller/commands",  # the ros2_control controller's command topic
    "command_rate_hz": 250.0,  # how often due actuator commands are checked and sent
    "trajectory_duration_ms": 40.0,  # trajectory mode: time_from_start of each one-point trajectory
    "livelink_enabled": False,  # send Unreal Live Link Face packets (UDP)
    "livelink_host": "127.0.0.1",
    "livelink_port": 11111,
    "livelink_latency_ms": 0.0,  # sent this much before presentation (the renderer's own lag)
    "marker_enabled": True,  # publish the face mesh as a visualization_msgs/Marker for rviz2
    "marker_topic": "/moshiface/robot/face_marker",
    "marker_rate_hz": 5.0,
    "marker_max_triangles": 4000,  # 0 = all (rclpy builds one Point per corner: keep it modest)
    "frame_id": "robot_head",  # frame_id of the marker and of published blendshapes
}

# node name -> its parameters; each node's config file lists exactly these (a test checks).
NODES = {
    "moshiface_node": MOSHIFACE_NODE,
    "audio_capture": AUDIO_CAPTURE,
    "audio_playback": AUDIO_PLAYBACK,
    "face_tracker": FACE_TRACKER,
    "retarget": RETARGET,
}
