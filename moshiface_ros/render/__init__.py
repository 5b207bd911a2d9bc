"""Previews of recorded sessions: ``moshiface render SESSION`` (see preview.py)."""
