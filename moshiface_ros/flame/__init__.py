"""The FLAME head model: loading a user's FLAME pickle safely, skinning, teeth, the
package's synthetic head (FLAME's format and dimensions, a recognisable human face) for
tests and demos, and motion driven by a voice.

FLAME itself cannot ship with this package (licence, registration at flame.is.tue.mpg.de);
see docs/face-tracking.md. Submodules are imported explicitly (``moshiface_ros.flame.model``)
so that importing this package stays cheap.
"""
