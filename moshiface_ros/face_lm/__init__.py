"""Moshi-Face: Moshi's RQ-Transformer extended with a stream of face tokens.

``model`` (the extended ``LMModel`` and its Face Transformer), ``generate`` (the
streaming generator, one call per 80 ms step), ``weights`` (checkpoints), ``data``
(dialogue preparation), ``train`` (the two training stages) and ``evaluate`` (the
paper's teacher-forced and free-run protocols). Submodules are imported on use: torch
and moshi are heavy.
"""
