"""Topic names shared by the nodes, the launch files and the session recorder."""

USER_AUDIO = "/moshiface/user/audio"
USER_FACE = "/moshiface/user/face"
ROBOT_AUDIO = "/moshiface/robot/audio"
ROBOT_TEXT = "/moshiface/robot/text"
ROBOT_FACE = "/moshiface/robot/face"
ROBOT_FACE_TOKENS = "/moshiface/robot/face_tokens"
ROBOT_BLENDSHAPES = "/moshiface/robot/blendshapes"
