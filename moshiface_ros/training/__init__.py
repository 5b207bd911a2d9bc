"""Training, data preparation and evaluation of Moshi-Face: everything that builds on the
model (``face_lm``) and the speech models (``speech``) but that a conversation never runs.

``data`` (``moshiface data prepare``: dialogues to token streams) and ``dataset`` (the
tokenized dialogues and training crops); ``config``, ``model_setup``, ``loss``,
``distributed``, ``checkpoints`` and ``train`` (``moshiface train``: the paper's two stages);
``sync`` and ``evaluate`` (``moshiface eval``: the teacher-forced and free-run protocols).
This layer sits above ``face_lm`` and ``speech``; nothing below imports it. Submodules
are imported on use: torch and moshi are heavy.
"""
