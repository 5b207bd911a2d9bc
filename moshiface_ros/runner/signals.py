"""What SIGINT and SIGTERM do during a session.

Before any output exists (reading, loading weights: minutes for real ones) a signal
aborts at once by raising ``Interrupted``, and the runner removes whatever it had begun
(the output directory, its write probe). Once outputs are being written (``defer()``),
a signal is only remembered, and the stepping loop stops at the next step boundary so
that no message is cut in half; the session closes as a whole, interrupted one.
"""

from __future__ import annotations

import signal
from contextlib import contextmanager
from typing import Any, Iterator

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived before the session had anything to keep."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class SignalGuard:
    """The handler of SIGINT and SIGTERM while a session runs (see the module's docstring)."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self._deferred = False

    def defer(self) -> None:
        """From now on a signal is remembered, not raised: the outputs exist (or are being
        cleaned up, which a second signal must not cut short)."""
        self._deferred = True

    @property
    def stopped(self) -> bool:
        """Whether a deferred signal asks the session to stop."""
        return self.signal is not None

    def __call__(self, signum: int, _frame: Any) -> None:
        if not self._deferred:
            raise Interrupted(signum)
        if self.signal is None:
            self.signal = signum


@contextmanager
def signal_guard() -> Iterator[SignalGuard]:
    """Installs a ``SignalGuard`` for SIGINT and SIGTERM; restores the old handlers after."""
    guard = SignalGuard()
    previous = {sig: signal.signal(sig, guard) for sig in STOP_SIGNALS}
    try:
        yield guard
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
