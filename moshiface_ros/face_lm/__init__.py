"""Moshi-Face, the model: Moshi's RQ-Transformer extended with a stream of face tokens.

``config`` (the face streams), ``tiny`` (the tiny random configuration), ``face_transformer``
and ``model`` (the extended ``LMModel``), ``generate`` (the streaming generator, one call
per 80 ms step), ``step`` (one generated step by name) and ``weights`` (checkpoints).
Training, data preparation and evaluation build on it from ``moshiface_ros.training``; this
package imports nothing from there nor from ``speech``, which sits above it. Submodules are
imported on use: torch and moshi are heavy.
"""
