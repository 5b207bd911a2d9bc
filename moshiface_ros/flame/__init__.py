"""The FLAME head model: loading a user's FLAME pickle safely, skinning, teeth, and a
synthetic stand-in with FLAME's format and dimensions for tests and demos.

FLAME itself cannot ship with this package (licence, registration at flame.is.tue.mpg.de);
see docs/face-tracking.md. Submodules are imported explicitly (``moshiface_ros.flame.model``)
so that importing this package stays cheap.
"""
