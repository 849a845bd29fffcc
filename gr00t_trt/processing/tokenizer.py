"""The Eagle (Qwen3 + 11 tokens) tokenizer on the ``tokenizers`` library alone, no transformers.

Sources, in order of preference: a ``tokenizer.json``; Qwen2-style ``vocab.json`` + ``merges.txt`` +
added tokens (what Isaac-GR00T's Eagle folder ships, built here exactly as transformers converts it);
or, for a checkpoint without tokenizer files, Qwen3's tokenizer plus Eagle's 11 tokens in their fixed
order (eagle-tokenizer.md §4). Whatever the source, the image tokens must land on the checkpoint's
``image_token_index`` (+1, +2) and the size must equal the LLM vocabulary, or loading fails.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

from ..base.errors import TokenizerError
from ..base.files import read_json, write_atomic
from .prompt import EAGLE_CHAT_TEMPLATE, IMAGE_END_TOKEN, IMAGE_START_TOKEN, IMAGE_TOKEN

TOKENIZER_FILE = "tokenizer.json"
CHAT_TEMPLATE_FILE = "chat_template.json"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
#: Hub repo whose tokenizer Eagle-Block2A-2B-v2 extends (text_config._name_or_path).
QWEN_TOKENIZER_REPO = "Qwen/Qwen3-1.7B"

#: Qwen2/Qwen3 pre-tokenisation regex (transformers' Qwen2 conversion).
QWEN_SPLIT_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

#: Qwen3's 26 added tokens after its 151,643 BPE tokens: (content, special), in id order.
QWEN_ADDED_TOKENS: tuple[tuple[str, bool], ...] = tuple(
    [(t, True) for t in (
        "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
        "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
        "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
    )]
    + [(t, False) for t in (
        "<tool_call>", "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>",
        "<|repo_name|>", "<|file_sep|>", "<tool_response>", "</tool_response>", "<think>", "</think>",
    )]
)  # fmt: skip

#: Eagle's 11 tokens beyond Qwen3, all special, in the order that gives <IMG_CONTEXT> the first id.
EAGLE_ADDED_TOKENS: tuple[str, ...] = (
    IMAGE_TOKEN, IMAGE_START_TOKEN, IMAGE_END_TOKEN,
    "<box>", "</box>", "<quad>", "</quad>", "<ref>", "</ref>", "<interval>", "</interval>",
)  # fmt: skip

DEFAULT_PAD_TOKEN = "<|endoftext|>"
DEFAULT_EOS_TOKEN = "<|im_end|>"


class TokenLookup:
    """What each of our tokenizer wrappers answers from its ``tokenizer`` (a ``tokenizers.Tokenizer``): its
    size with the added tokens, and a token's id or a TokenizerError naming the token."""

    def __len__(self) -> int:
        return self.tokenizer.get_vocab_size(with_added_tokens=True)

    def token_id(self, token: str) -> int:
        """Id of ``token`` or TokenizerError naming it."""
        tid = self.tokenizer.token_to_id(token)
        if tid is None:
            raise TokenizerError(f"the tokenizer has no token {token!r}")
        return tid

    @functools.cached_property
    def longest_token_chars(self) -> int:
        """Characters of the vocabulary's longest token (byte-level tokens: one character per byte), so a
        text longer than ``n * longest_token_chars`` UTF-8 bytes is known to need more than n tokens."""
        return max(map(len, self.tokenizer.get_vocab(with_added_tokens=True)), default=1)


@dataclass(frozen=True, eq=False)
class EagleTokenizer(TokenLookup):
    """A ``tokenizers.Tokenizer`` plus the chat template and the ids GR00T's prompt needs."""

    tokenizer: Tokenizer
    chat_template: str = EAGLE_CHAT_TEMPLATE
    pad_token: str = DEFAULT_PAD_TOKEN
    eos_token: str = DEFAULT_EOS_TOKEN

    @property
    def pad_token_id(self) -> int:
        return self.token_id(self.pad_token)

    @property
    def eos_token_id(self) -> int:
        return self.token_id(self.eos_token)

    @property
    def image_token_index(self) -> int:
        return self.token_id(IMAGE_TOKEN)

    def encode(self, text: str) -> list[int]:
        """Ids of ``text`` with no BOS/EOS (Eagle never adds any); special tokens in text are matched."""
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=False)

    def check(self, image_token_index: int, vocab_size: int | None = None, source: str = "tokenizer") -> None:
        """Fail unless <IMG_CONTEXT>, <img>, </img> map to image_token_index, +1, +2 and the size fits."""
        expected = {IMAGE_TOKEN: image_token_index, IMAGE_START_TOKEN: image_token_index + 1,
                    IMAGE_END_TOKEN: image_token_index + 2}  # fmt: skip
        got = {tok: self.tokenizer.token_to_id(tok) for tok in expected}
        if got != expected:
            raise TokenizerError(
                f"{source}: image tokens map to {got}, expected {expected} (the checkpoint's image_token_index) — "
                "pass the tokenizer this checkpoint was trained with (--tokenizer PATH)"
            )
        if vocab_size is not None and len(self) != vocab_size:
            raise TokenizerError(
                f"{source}: tokenizer has {len(self)} tokens, expected the LLM vocab_size {vocab_size} — "
                "pass the tokenizer this checkpoint was trained with (--tokenizer PATH)"
            )
        for name in ("pad_token", "eos_token"):
            self.token_id(getattr(self, name))

    def batch(self, sequences: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
        """Left-pad with the pad id (GR00T pads left): int64 ids [B, S] and bool attention mask [B, S]."""
        return left_pad(sequences, self.pad_token_id)


def left_pad(sequences: Sequence[Sequence[int]], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """int64 ids [B, S] left-padded with ``pad_id`` to the longest sequence, and the bool mask [B, S]
    (GR00T N1.6 and N1.7 both pad on the left)."""
    length = max(len(s) for s in sequences)
    ids = np.full((len(sequences), length), pad_id, dtype=np.int64)
    mask = np.zeros((len(sequences), length), dtype=bool)
    for row, seq in enumerate(sequences):
        if len(seq):
            ids[row, length - len(seq) :] = seq
            mask[row, length - len(seq) :] = True
    return ids, mask


# ------------------------------------------------------------------------------------------ building
def qwen2_tokenizer(vocab: dict[str, int] | str | Path, merges: list[tuple[str, str]] | str | Path) -> Tokenizer:
    """Byte-level BPE set up exactly as transformers' Qwen2 fast tokenizer (no added tokens yet).

    ``vocab``/``merges`` are either the values or the paths of vocab.json / merges.txt.
    """
    if isinstance(vocab, (str, Path)):
        bpe = models.BPE.from_file(str(vocab), str(merges), unk_token=None, dropout=None,
                                   continuing_subword_prefix="", end_of_word_suffix="", fuse_unk=False,
                                   byte_fallback=False)  # fmt: skip
    else:
        bpe = models.BPE(vocab=vocab, merges=merges, unk_token=None, dropout=None, continuing_subword_prefix="",
                         end_of_word_suffix="", fuse_unk=False, byte_fallback=False)  # fmt: skip
    tok = Tokenizer(bpe)
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN_SPLIT_PATTERN), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    return tok


def add_tokens_in_order(tok: Tokenizer, tokens: Sequence[AddedToken], first_id: int, source: str) -> None:
    """Append added tokens one by one and check each lands on the next id from ``first_id``."""
    for offset, token in enumerate(tokens):
        expected = first_id + offset
        existing = tok.token_to_id(token.content)
        if existing is not None:
            if existing != expected:
                raise TokenizerError(f"{source}: token {token.content!r} has id {existing}, expected {expected}")
            continue
        if tok.get_vocab_size(with_added_tokens=True) != expected:
            raise TokenizerError(
                f"{source}: added token {token.content!r} should get id {expected} but the vocabulary has "
                f"{tok.get_vocab_size(with_added_tokens=True)} entries (ids are not contiguous)"
            )
        (tok.add_special_tokens if token.special else tok.add_tokens)([token])
        if tok.token_to_id(token.content) != expected:
            raise TokenizerError(f"{source}: token {token.content!r} did not land on id {expected}")


def add_eagle_tokens(tok: Tokenizer, source: str = "tokenizer") -> None:
    """Turn a Qwen3 tokenizer into Eagle's: append the 11 Eagle tokens after the current last id."""
    tokens = [AddedToken(t, special=True, normalized=False, lstrip=False, rstrip=False, single_word=False)
              for t in EAGLE_ADDED_TOKENS]  # fmt: skip
    add_tokens_in_order(tok, tokens, tok.get_vocab_size(with_added_tokens=True), source)


def _added_tokens_from_files(folder: Path, base_size: int) -> list[AddedToken]:
    """Added tokens of a slow-tokenizer folder in id order, flags from tokenizer_config.json."""
    content_ids: dict[int, str] = {}
    flags: dict[int, dict] = {}
    added_path = folder / "added_tokens.json"
    if added_path.exists():
        content_ids.update({int(i): t for t, i in _read_json(added_path).items()})
    config_path = folder / TOKENIZER_CONFIG_FILE
    if config_path.exists():
        for i, entry in (_read_json(config_path).get("added_tokens_decoder") or {}).items():
            content_ids.setdefault(int(i), entry["content"])
            if content_ids[int(i)] != entry["content"]:
                raise TokenizerError(
                    f"{folder}: id {i} is {content_ids[int(i)]!r} in added_tokens.json but "
                    f"{entry['content']!r} in tokenizer_config.json"
                )
            flags[int(i)] = entry
    ordered = sorted(content_ids)
    if ordered and ordered != list(range(base_size, base_size + len(ordered))):
        raise TokenizerError(f"{folder}: added token ids {ordered[0]}…{ordered[-1]} are not contiguous from {base_size}")
    result = []
    for i in ordered:
        f = flags.get(i, {})
        result.append(
            AddedToken(
                content_ids[i],
                special=bool(f.get("special", True)),
                normalized=bool(f.get("normalized", False)),
                lstrip=bool(f.get("lstrip", False)),
                rstrip=bool(f.get("rstrip", False)),
                single_word=bool(f.get("single_word", False)),
            )
        )
    return result


# ------------------------------------------------------------------------------------------ files
def has_tokenizer_files(folder: str | Path) -> bool:
    folder = Path(folder)
    return (folder / TOKENIZER_FILE).exists() or ((folder / "vocab.json").exists() and (folder / "merges.txt").exists())


def load_tokenizer(folder: str | Path) -> EagleTokenizer:
    """Load tokenizer.json (or vocab.json + merges.txt + added tokens) and the chat template.

    The chat template comes from chat_template.json; without one, Eagle's is used (GR00T N1.6 always
    renders with Eagle's, never with the Qwen template in tokenizer_config.json).
    """
    folder = Path(folder)
    if (folder / TOKENIZER_FILE).exists():
        try:
            tok = Tokenizer.from_file(str(folder / TOKENIZER_FILE))
        except Exception as exc:  # tokenizers raises plain Exception subclasses
            raise TokenizerError(f"{folder / TOKENIZER_FILE} cannot be read: {exc}") from None
    elif (folder / "vocab.json").exists() and (folder / "merges.txt").exists():
        try:
            tok = qwen2_tokenizer(folder / "vocab.json", folder / "merges.txt")
        except Exception as exc:
            raise TokenizerError(f"{folder}: vocab.json/merges.txt cannot be read: {exc}") from None
        add_tokens_in_order(tok, _added_tokens_from_files(folder, tok.get_vocab_size()), tok.get_vocab_size(), str(folder))
    else:
        raise TokenizerError(
            f"no tokenizer in {folder} — expected tokenizer.json or vocab.json + merges.txt "
            "(pass --tokenizer PATH to use another folder)"
        )
    template = EAGLE_CHAT_TEMPLATE
    if (folder / CHAT_TEMPLATE_FILE).exists():
        template = _read_json(folder / CHAT_TEMPLATE_FILE).get("chat_template", EAGLE_CHAT_TEMPLATE)
    pad, eos = DEFAULT_PAD_TOKEN, DEFAULT_EOS_TOKEN
    if (folder / TOKENIZER_CONFIG_FILE).exists():
        config = _read_json(folder / TOKENIZER_CONFIG_FILE)
        pad = _token_string(config.get("pad_token")) or pad
        eos = _token_string(config.get("eos_token")) or eos
    return EagleTokenizer(tok, chat_template=template, pad_token=pad, eos_token=eos)


def save_tokenizer(tok: EagleTokenizer, folder: str | Path) -> list[Path]:
    """Write tokenizer.json, chat_template.json and a small tokenizer_config.json (pad/eos tokens and
    their ids, left padding) — all the runtime needs. Files are written atomically."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "pad_token": tok.pad_token,
        "eos_token": tok.eos_token,
        "bos_token": None,
        "unk_token": None,
        "padding_side": "left",
        "add_bos_token": False,
        "add_eos_token": False,
        "clean_up_tokenization_spaces": False,
        "split_special_tokens": False,
        "model_max_length": 32768,
        "gr00t_trt": {
            "pad_token_id": tok.pad_token_id,
            "eos_token_id": tok.eos_token_id,
            "image_token_index": tok.tokenizer.token_to_id(IMAGE_TOKEN),
            "vocab_size": len(tok),
        },
    }
    written = [
        write_atomic(folder / TOKENIZER_FILE, tok.tokenizer.to_str(pretty=False)),
        write_atomic(folder / CHAT_TEMPLATE_FILE, json.dumps({"chat_template": tok.chat_template}, indent=2) + "\n"),
        write_atomic(folder / TOKENIZER_CONFIG_FILE, json.dumps(config, indent=2) + "\n"),
    ]
    return written


def resolve_tokenizer(
    checkpoint_folder: str | Path | None,
    override: str | None,
    image_token_index: int,
    vocab_size: int,
) -> EagleTokenizer:
    """The tokenizer of a checkpoint, checked against its image_token_index and vocab_size.

    ``override`` (a folder or a Hub id) wins; then tokenizer files in the checkpoint folder; else Qwen3's
    tokenizer from the Hub plus Eagle's 11 tokens and chat template. A Qwen-only source (no
    ``<IMG_CONTEXT>``) is extended with Eagle's tokens the same way.
    """
    if override:
        path = Path(override).expanduser()
        if path.is_dir():
            tok, source = load_tokenizer(path), str(path)
        elif path.suffix == ".json" and path.is_file():
            tok, source = load_tokenizer_json(path), str(path)
        elif override.startswith((".", "/", "~")) or path.suffix == ".json":
            raise TokenizerError(f"tokenizer {override!r} not found — expected a folder or a tokenizer.json file")
        else:
            tok, source = _load_from_hub(override), f"{override} (Hugging Face Hub)"
    elif checkpoint_folder is not None and has_tokenizer_files(checkpoint_folder):
        tok, source = load_tokenizer(checkpoint_folder), str(checkpoint_folder)
    else:
        tok, source = _load_from_hub(QWEN_TOKENIZER_REPO), f"{QWEN_TOKENIZER_REPO} + Eagle's 11 tokens"
    if tok.tokenizer.token_to_id(IMAGE_TOKEN) is None:
        add_eagle_tokens(tok.tokenizer, source)
        tok = EagleTokenizer(tok.tokenizer, EAGLE_CHAT_TEMPLATE, tok.pad_token, tok.eos_token)
    tok.check(image_token_index, vocab_size, source)
    return tok


def load_tokenizer_json(path: str | Path) -> EagleTokenizer:
    """A bare tokenizer.json with Eagle's chat template and the default pad/eos tokens."""
    try:
        return EagleTokenizer(Tokenizer.from_file(str(path)))
    except Exception as exc:
        raise TokenizerError(f"{path} cannot be read as a tokenizer.json: {exc}") from None


def _load_from_hub(repo_id: str) -> EagleTokenizer:
    """Download a repo's tokenizer files (tokenizer.json preferred) and load them."""
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:  # pragma: no cover - huggingface_hub is a dependency
        raise TokenizerError(
            f"cannot fetch the tokenizer of {repo_id}: huggingface_hub is not installed — pass --tokenizer PATH"
        ) from None
    try:
        path = Path(hf_hub_download(repo_id, TOKENIZER_FILE))
        folder = path.parent
        for optional in (TOKENIZER_CONFIG_FILE, CHAT_TEMPLATE_FILE):
            try:
                hf_hub_download(repo_id, optional)
            except Exception:
                pass
    except Exception as exc:
        raise TokenizerError(
            f"cannot download {TOKENIZER_FILE} of {repo_id} ({type(exc).__name__}) — offline? "
            "pass --tokenizer PATH (a folder with tokenizer.json, or vocab.json + merges.txt)"
        ) from None
    tok = load_tokenizer(folder)
    if (folder / CHAT_TEMPLATE_FILE).exists():
        return tok
    # Qwen's own template (in tokenizer_config.json) is the wrong one for GR00T: use Eagle's
    return EagleTokenizer(tok.tokenizer, EAGLE_CHAT_TEMPLATE, tok.pad_token, tok.eos_token)


def _token_string(value) -> str | None:
    if isinstance(value, dict):
        return value.get("content")
    return value if isinstance(value, str) else None


def _read_json(path: Path):
    return read_json(path, "tokenizer file", TokenizerError)
