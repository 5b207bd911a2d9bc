"""QoS profiles shared by the package's nodes.

Audio and text are streams where every message matters (a lost chunk is a click, a lost
token a missing word), so they are RELIABLE with enough depth for about 4 s of 80 ms
chunks. Note that a RELIABLE subscriber receives nothing from a BEST_EFFORT publisher:
a third-party microphone driver that publishes best effort needs a relay or a matching
profile.
"""

from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy

AUDIO_QOS = QoSProfile(depth=50, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE)
TEXT_QOS = QoSProfile(depth=100, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE)

# Face frames (25 fps) and face tokens: RELIABLE like audio (a lost frame is a visible jerk),
# about 2 s deep.
FACE_QOS = QoSProfile(depth=50, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE)
# Commands to a head (blendshapes, actuators): only the newest matters.
COMMAND_QOS = QoSProfile(depth=5, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE)
