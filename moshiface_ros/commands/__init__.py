"""Command groups of the ``moshiface`` console script, one module each (see ``cli.py``)."""
