"""Qwen3-VL's tokenizer (N1.7's backbone, Cosmos-Reason2-2B), on the ``tokenizers`` library alone.

Cosmos-Reason2-2B ships Qwen3-VL-2B-Instruct's tokenizer files (spec §2.5, §9 item 2): the Qwen3
byte-level BPE (151,643 tokens) plus Qwen's 26 added tokens at ids 151643-151668, and nothing else, so
``len(tokenizer)`` is 151,669 (the LLM embedding has 151,936 rows; the rest are never produced). Sources:
a ``tokenizer.json``, or ``vocab.json`` + ``merges.txt`` (for instance N1.6's Eagle folder, whose base
BPE Qwen3-VL shares — its 11 Eagle tokens are not part of Qwen3-VL and are left out). GR00T N1.7
checkpoints carry no tokenizer (the reference downloads the gated Cosmos-Reason2-2B's), so without local
files the public Qwen3-VL-2B-Instruct tokenizer is fetched — NVIDIA's Edge-LLM docs call the two identical.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizers import AddedToken, Tokenizer

from ....base.errors import TokenizerError
from ....base.files import write_atomic
from ....processing.tokenizer import (
    QWEN_ADDED_TOKENS,
    TOKENIZER_FILE,
    TokenLookup,
    add_tokens_in_order,
    left_pad,
    qwen2_tokenizer,
)

#: BPE tokens before the first added token (<|endoftext|>).
QWEN_BPE_SIZE = 151643
#: len(tokenizer) of Qwen3-VL: the BPE plus Qwen's 26 added tokens.
QWEN3_VL_TOKENIZER_SIZE = QWEN_BPE_SIZE + len(QWEN_ADDED_TOKENS)

#: public Hub repo with the same tokenizer files as the gated nvidia/Cosmos-Reason2-2B (spec §2.5)
QWEN3_VL_TOKENIZER_REPO = "Qwen/Qwen3-VL-2B-Instruct"

PAD_TOKEN = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
VISION_START = "<|vision_start|>"
VISION_END = "<|vision_end|>"
IMAGE_PAD = "<|image_pad|>"

#: The ids the N1.7 prompt relies on (spec §1.2, §4.3); a tokenizer that disagrees is refused.
EXPECTED_IDS = {
    PAD_TOKEN: 151643,
    IM_START: 151644,
    IM_END: 151645,
    VISION_START: 151652,
    VISION_END: 151653,
    IMAGE_PAD: 151655,
}


@dataclass(frozen=True, eq=False)
class Qwen3VLTokenizer(TokenLookup):
    """A ``tokenizers.Tokenizer`` with the ids N1.7's prompt needs; encodes without BOS/EOS."""

    tokenizer: Tokenizer

    @property
    def pad_token_id(self) -> int:
        return self.token_id(PAD_TOKEN)

    @property
    def image_token_id(self) -> int:
        return self.token_id(IMAGE_PAD)

    def encode(self, text: str) -> list[int]:
        """Ids of ``text``; special tokens written in the text are matched (Qwen adds no BOS/EOS)."""
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=False)

    def batch(self, sequences: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
        """Left-padded int64 ids [B, S] with <|endoftext|> and the bool attention mask [B, S]."""
        return left_pad(sequences, self.pad_token_id)

    def check(self, source: str = "tokenizer") -> Qwen3VLTokenizer:
        """Fail unless the prompt's special tokens sit where Qwen3-VL puts them: its ids (151643…) after
        Qwen3's BPE, or the same offsets after a smaller BPE (the synthetic presets' tokenizers); returns
        self."""
        base = self.tokenizer.token_to_id(PAD_TOKEN)
        want = {t: i - EXPECTED_IDS[PAD_TOKEN] + (base or 0) for t, i in EXPECTED_IDS.items()}
        got = {token: self.tokenizer.token_to_id(token) for token in EXPECTED_IDS}
        if base is None or got != want or base != self.tokenizer.get_vocab_size(with_added_tokens=False):
            wrong = {t: got[t] for t in EXPECTED_IDS if got[t] != want[t]} or {PAD_TOKEN: base}
            raise TokenizerError(
                f"{source}: special tokens {wrong} are not on Qwen3-VL's ids "
                f"{ {t: EXPECTED_IDS[t] for t in wrong} } — pass Qwen3-VL's (Cosmos-Reason2's) tokenizer files"
            )
        return self


def qwen_added_tokens() -> list[AddedToken]:
    """Qwen's 26 added tokens in id order (special flags as in Qwen3's tokenizer_config.json)."""
    return [
        AddedToken(content, special=special, normalized=False, lstrip=False, rstrip=False, single_word=False)
        for content, special in QWEN_ADDED_TOKENS
    ]


def build_qwen3_vl_tokenizer(vocab: str | Path, merges: str | Path) -> Qwen3VLTokenizer:
    """The Qwen3 BPE of ``vocab.json`` + ``merges.txt`` plus Qwen's 26 added tokens (ids 151643-151668)."""
    source = str(Path(vocab).parent)
    try:
        tok = qwen2_tokenizer(vocab, merges)
    except Exception as exc:  # tokenizers raises plain Exception subclasses
        raise TokenizerError(f"{source}: vocab.json/merges.txt cannot be read: {exc}") from None
    if tok.get_vocab_size() != QWEN_BPE_SIZE:
        raise TokenizerError(
            f"{source}: vocab.json has {tok.get_vocab_size()} BPE tokens, expected Qwen3's {QWEN_BPE_SIZE}"
        )
    add_tokens_in_order(tok, qwen_added_tokens(), QWEN_BPE_SIZE, source)
    return Qwen3VLTokenizer(tok).check(source)


def load_qwen3_vl_tokenizer(folder: str | Path) -> Qwen3VLTokenizer:
    """``tokenizer.json`` of ``folder`` if present, else its ``vocab.json`` + ``merges.txt`` + Qwen's tokens."""
    folder = Path(folder)
    if (folder / TOKENIZER_FILE).is_file():
        try:
            tok = Tokenizer.from_file(str(folder / TOKENIZER_FILE))
        except Exception as exc:
            raise TokenizerError(f"{folder / TOKENIZER_FILE} cannot be read: {exc}") from None
        return Qwen3VLTokenizer(tok).check(str(folder / TOKENIZER_FILE))
    if (folder / "vocab.json").is_file() and (folder / "merges.txt").is_file():
        return build_qwen3_vl_tokenizer(folder / "vocab.json", folder / "merges.txt")
    raise TokenizerError(
        f"no tokenizer in {folder} — expected tokenizer.json or vocab.json + merges.txt (Qwen3-VL's files)"
    )


def save_qwen3_vl_tokenizer(tok: Qwen3VLTokenizer, folder: str | Path) -> Path:
    """Write ``tokenizer.json`` (atomically) so an export directory carries its tokenizer."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return write_atomic(folder / TOKENIZER_FILE, tok.tokenizer.to_str(pretty=False))


def resolve_qwen3_vl_tokenizer(
    checkpoint_folder: str | Path | None, override: str | None = None
) -> Qwen3VLTokenizer:
    """The tokenizer for an N1.7 checkpoint: ``override`` (a folder), else tokenizer files beside the
    checkpoint, else Qwen3-VL-2B-Instruct's ``tokenizer.json`` from the Hugging Face Hub."""
    if override:
        return load_qwen3_vl_tokenizer(Path(override).expanduser())
    if checkpoint_folder is not None:
        folder = Path(checkpoint_folder)
        if (folder / TOKENIZER_FILE).is_file() or (folder / "vocab.json").is_file():
            return load_qwen3_vl_tokenizer(folder)
    try:
        from huggingface_hub import hf_hub_download

        path = hf_hub_download(QWEN3_VL_TOKENIZER_REPO, TOKENIZER_FILE)
    except Exception as exc:  # ImportError, offline, gated, missing file: one message
        raise TokenizerError(
            f"cannot download {TOKENIZER_FILE} of {QWEN3_VL_TOKENIZER_REPO} ({type(exc).__name__}) — offline? "
            "pass --tokenizer PATH (a folder with tokenizer.json, or vocab.json + merges.txt)"
        ) from None
    return load_qwen3_vl_tokenizer(Path(path).parent)
