"""How loud the robot speaks, read from its audio tokens: the free-run sync reference.

In free-run there is no waveform but the one Mimi decodes, and a small or untrained Mimi
decodes noise whose energy says little about what the tokens carry. The probe measures the
speech energy straight from the tokens instead: a ridge regression from the one-hot codes of
a step's 8 audio tokens to the log RMS energy of the original waveform over that step,
fitted on the training split (each speaker's tokens against its own recording).

Ridge on one-hot codes is an additive model, ``energy = bias + sum_k w_k[token_k]``. It is
solved exactly by backfitting (block coordinate descent: each codebook's weights have a
closed form given the others, ``w_k[v] = sum of the residuals where token_k = v / (count + l)``),
which needs memory for 8 x card weights rather than a (8 x card)^2 normal matrix. The
penalty ``l`` is chosen on the validation split. ``score`` is the probe's correlation with
the true energy on data it was not fitted on: the probe's own ceiling, reported beside it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import MoshifaceError

PENALTIES = (1.0, 10.0, 100.0)
ITERATIONS = 12


@dataclass
class EnergyProbe:
    card: int
    codebooks: int
    penalty: float = 10.0
    bias: float = 0.0
    weights: np.ndarray = field(default=None, repr=False)  # type: ignore[assignment]  # [codebooks, card]

    def __post_init__(self) -> None:
        if self.weights is None:
            self.weights = np.zeros((self.codebooks, self.card))

    def fit(self, tokens: list[np.ndarray], energy: list[np.ndarray]) -> "EnergyProbe":
        """``tokens`` [Q, T] and ``energy`` [T] per conversation."""
        codes = np.concatenate([self._check(t) for t in tokens], axis=1)
        target = np.concatenate([np.asarray(e, dtype=np.float64) for e in energy])
        if codes.shape[1] != target.size or target.size < 2:
            raise MoshifaceError("the energy probe needs as many energy values as token steps (and at least two)")
        self.bias = float(target.mean())
        self.weights[:] = 0.0
        residual = target - self.bias
        counts = [np.bincount(codes[k], minlength=self.card) for k in range(self.codebooks)]
        for _ in range(ITERATIONS):
            for k in range(self.codebooks):
                residual += self.weights[k][codes[k]]
                self.weights[k] = np.bincount(codes[k], weights=residual, minlength=self.card) / (counts[k] + self.penalty)
                residual -= self.weights[k][codes[k]]
        return self

    def predict(self, tokens: np.ndarray) -> np.ndarray:
        """[T] estimated log energy of the steps whose tokens are ``tokens`` [Q, T]."""
        codes = self._check(tokens)
        return self.bias + sum(self.weights[k][codes[k]] for k in range(self.codebooks))

    def score(self, tokens: list[np.ndarray], energy: list[np.ndarray]) -> float:
        """Pearson correlation of the estimate with the true energy over all the steps."""
        guess = np.concatenate([self.predict(t) for t in tokens])
        truth = np.concatenate([np.asarray(e, dtype=np.float64) for e in energy])
        if guess.std() < 1e-12 or truth.std() < 1e-12:
            return 0.0
        return float(np.corrcoef(guess, truth)[0, 1])

    def _check(self, tokens: np.ndarray) -> np.ndarray:
        codes = np.asarray(tokens, dtype=np.int64)
        if codes.ndim != 2 or codes.shape[0] != self.codebooks:
            raise MoshifaceError(f"the energy probe reads [{self.codebooks}, T] audio tokens, got {codes.shape}")
        if codes.size and (codes.min() < 0 or codes.max() >= self.card):
            raise MoshifaceError(f"audio tokens outside 0..{self.card - 1}")
        return codes


def fit_probe(train: tuple[list[np.ndarray], list[np.ndarray]], valid: tuple[list[np.ndarray], list[np.ndarray]],
              card: int) -> tuple[EnergyProbe, float]:
    """The probe with the penalty that scores best on ``valid``, refitted on both; returns it
    and its validation score (with that penalty, fitted on ``train`` alone)."""
    codebooks = train[0][0].shape[0]
    scores = {penalty: EnergyProbe(card, codebooks, penalty).fit(*train).score(*valid) for penalty in PENALTIES}
    best = max(scores, key=lambda p: scores[p])
    probe = EnergyProbe(card, codebooks, best).fit(train[0] + valid[0], train[1] + valid[1])
    return probe, scores[best]
