"""The text tokenizer a prepared dataset, and every model trained on it, carries.

A model without a tokenizer (``--model tiny``) cannot turn words into the text stream, and a
checkpoint that does not carry the tokenizer it was trained with shows ``<478>`` instead of
words at run time. So ``data prepare`` always leaves one SentencePiece model at
``DATA/tokenizer.model``: the one given (``--tokenizer``), else the model's own, else one
trained here on the corpus transcripts. Training copies it into every checkpoint.

A trained tokenizer keeps Moshi's special ids, because the text stream uses them: 0 is the
end-of-padding token (``<unk>`` in Moshi's own tokenizer), 1 and 2 begin and end of sentence,
3 the padding token. Its size is the largest the corpus supports up to ``max_pieces``
(never above the model's text vocabulary), so a corpus of a few sentences still gets one.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Iterable

from ..errors import MoshifaceError
from ..fileio import atomic_write_bytes

TOKENIZER_FILE = "tokenizer.model"  # in a prepared data directory
DEFAULT_PIECES = 4000


def load_tokenizer(path: Path) -> Any:
    """A SentencePiece model from ``path``; a missing or unreadable file is one clear line."""
    import sentencepiece

    if not path.is_file():
        raise MoshifaceError(f"tokenizer {path} is not a file")
    try:
        return sentencepiece.SentencePieceProcessor(model_file=str(path))
    except (OSError, RuntimeError) as exc:
        raise MoshifaceError(f"{path} is not a SentencePiece model: {str(exc).strip()[:160]}") from exc


def tokenizer_from_bytes(blob: bytes) -> Any:
    import sentencepiece

    return sentencepiece.SentencePieceProcessor(model_proto=blob)


def train_tokenizer(sentences: Iterable[str], max_pieces: int = DEFAULT_PIECES) -> Any:
    """A unigram SentencePiece model of the sentences, with Moshi's special ids (see above)."""
    import sentencepiece

    lines = [s.strip() for s in sentences if s.strip()]
    if not lines:
        raise MoshifaceError("the transcripts hold no words to train a text tokenizer on")
    characters = len(set("".join(lines).replace(" ", "")))
    words = len({w for line in lines for w in line.split()})
    # what a unigram model of this corpus can hold: specials, characters, whole words and some pieces
    pieces = max(8, min(max_pieces, 4 + characters + 2 * words))
    buffer = io.BytesIO()
    try:
        sentencepiece.SentencePieceTrainer.train(
            sentence_iterator=iter(lines), model_writer=buffer, vocab_size=pieces, model_type="unigram",
            unk_id=0, bos_id=1, eos_id=2, pad_id=3, hard_vocab_limit=False, character_coverage=1.0,
            num_threads=1, minloglevel=2)  # one thread: every process of a torchrun trains the same one
    except RuntimeError as exc:
        raise MoshifaceError(f"cannot train a text tokenizer on these transcripts: {str(exc).strip()[:160]}") from exc
    return tokenizer_from_bytes(buffer.getvalue())


def save_tokenizer(tokenizer: Any, path: Path) -> Path:
    """Writes the tokenizer's model proto atomically (a checkpoint or data directory keeps it)."""
    atomic_write_bytes(path, tokenizer.serialized_model_proto())
    return path
