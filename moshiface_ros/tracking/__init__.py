"""Face tracking: camera frames -> MediaPipe face mesh landmarks -> a FLAME fit per frame.

Submodules are imported explicitly (``moshiface_ros.tracking.tracker``); mediapipe and
OpenCV are imported only where frames are read or landmarks detected.
"""
