"""N1.7 tokenizer and prompt: the golden ids of spec §4.3 on the real Qwen3 BPE, Qwen's 26 added tokens,
the §4.3 length formula, left padding and the failure paths."""

from __future__ import annotations

import json

import numpy as np
import pytest
from tokenizers import Tokenizer, models

from gr00t_trt.base.errors import TokenizerError
from gr00t_trt.families.n17.processing.prompt import image_token_count, prompt_ids, prompt_text
from gr00t_trt.families.n17.processing.tokenizer import (
    QWEN3_VL_TOKENIZER_SIZE,
    Qwen3VLTokenizer,
    build_qwen3_vl_tokenizer,
    load_qwen3_vl_tokenizer,
    resolve_qwen3_vl_tokenizer,
    save_qwen3_vl_tokenizer,
)
from gr00t_trt.processing.tokenizer import QWEN_ADDED_TOKENS

#: spec §4.3: one 256x256 camera, "pick up the apple" (75 tokens)
GOLDEN_75 = [151644, 872, 198, 151652] + [151655] * 64 + [151653, 29245, 705, 279, 23268, 151645, 198]


def test_golden_prompt_ids(qwen_tokenizer):
    ids = prompt_ids(qwen_tokenizer, "Pick up the apple!", [(256, 256)])
    assert ids.dtype == np.int64
    assert ids.tolist() == GOLDEN_75
    text = prompt_text("pick up the apple", [(256, 256)])
    assert (
        text
        == "<|im_start|>user\n<|vision_start|>"
        + "<|image_pad|>" * 64
        + "<|vision_end|>pick up the apple<|im_end|>\n"
    )


def test_qwen_added_tokens_and_size(qwen_tokenizer):
    assert len(qwen_tokenizer) == QWEN3_VL_TOKENIZER_SIZE == 151669
    for offset, (content, _special) in enumerate(QWEN_ADDED_TOKENS):
        assert qwen_tokenizer.token_id(content) == 151643 + offset
    assert qwen_tokenizer.token_id("<|image_pad|>") == 151655 == qwen_tokenizer.image_token_id
    assert qwen_tokenizer.pad_token_id == 151643
    # the Eagle folder's 11 extra tokens are N1.6's, not Qwen3-VL's
    assert qwen_tokenizer.tokenizer.token_to_id("<IMG_CONTEXT>") is None
    assert qwen_tokenizer.encode("<|im_start|>user\n") == [151644, 872, 198]


@pytest.mark.parametrize(
    ("sizes", "base"),
    [
        ([(256, 256)] * 2, 137),  # LIBERO: two square views
        ([(256, 448)] * 4, 461),  # DROID: two 16:9 views x two frames, no letterbox
        ([(256, 256)] * 4, 269),  # DROID with letterbox / square cameras
        ([(256, 352), (256, 320)], 5 + 88 + 2 + 80 + 2),
    ],
)
def test_length_formula(qwen_tokenizer, sizes, base):
    text = "pick up the red block"
    n_text = len(qwen_tokenizer.encode(text))
    ids = prompt_ids(qwen_tokenizer, text, sizes)
    assert len(ids) == base + n_text
    assert int((ids == 151655).sum()) == sum(image_token_count(h, w) for h, w in sizes)


def test_images_come_before_the_text(qwen_tokenizer):
    ids = prompt_ids(qwen_tokenizer, "go", [(256, 256), (256, 320)]).tolist()
    starts = [i for i, t in enumerate(ids) if t == 151652]
    ends = [i for i, t in enumerate(ids) if t == 151653]
    assert starts == [3, 3 + 64 + 2] and ends == [3 + 65, 3 + 66 + 81]
    assert ids[ends[-1] + 1 :] == qwen_tokenizer.encode("go") + [151645, 198]


def test_formalize_language_is_applied(qwen_tokenizer):
    assert (
        prompt_ids(qwen_tokenizer, "PICK up, the <|image_pad|> apple!", []).tolist()
        == prompt_ids(qwen_tokenizer, "pick up the image_pad apple", []).tolist()
    )
    raw = prompt_ids(qwen_tokenizer, "Pick", [], formalize=False).tolist()
    assert raw[3:-2] == qwen_tokenizer.encode("Pick")


def test_left_padding(qwen_tokenizer):
    short = prompt_ids(qwen_tokenizer, "go", [(256, 256)])
    long = prompt_ids(qwen_tokenizer, "pick up the apple and put it down", [(256, 256)])
    ids, mask = qwen_tokenizer.batch([short, long])
    pad = len(long) - len(short)
    assert pad > 0 and ids.shape == (2, len(long)) and ids.dtype == np.int64 and mask.dtype == bool
    assert ids[0, :pad].tolist() == [151643] * pad and not mask[0, :pad].any()
    assert ids[0, pad:].tolist() == short.tolist() and mask[0, pad:].all() and mask[1].all()


def test_save_and_resolve(qwen_tokenizer, qwen_bpe_dir, tmp_path):
    save_qwen3_vl_tokenizer(qwen_tokenizer, tmp_path / "export")
    again = load_qwen3_vl_tokenizer(tmp_path / "export")
    assert again.encode(prompt_text("pick up the apple", [(256, 256)])) == GOLDEN_75
    assert len(resolve_qwen3_vl_tokenizer(tmp_path / "export")) == 151669
    assert len(resolve_qwen3_vl_tokenizer(None, override=str(qwen_bpe_dir))) == 151669


def test_resolve_offline(tmp_path, monkeypatch):
    huggingface_hub = pytest.importorskip("huggingface_hub")

    def offline(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", offline)
    with pytest.raises(
        TokenizerError, match=r"cannot download tokenizer.json of Qwen/Qwen3-VL-2B-Instruct \(OSError\)"
    ):
        resolve_qwen3_vl_tokenizer(tmp_path)


def test_image_size_not_multiple_of_32():
    with pytest.raises(TokenizerError, match=r"image 252x252 is not a whole number of 32x32 tokens"):
        image_token_count(252, 252)


def test_missing_files(tmp_path):
    with pytest.raises(
        TokenizerError, match=r"no tokenizer in .* expected tokenizer.json or vocab.json \+ merges.txt"
    ):
        load_qwen3_vl_tokenizer(tmp_path)


def test_wrong_special_ids_are_refused():
    with pytest.raises(
        TokenizerError, match=r"special tokens .*'<\|image_pad\|>': None.* not on Qwen3-VL's ids"
    ):
        Qwen3VLTokenizer(Tokenizer(models.BPE())).check()


def test_wrong_bpe_size_is_refused(tmp_path):
    (tmp_path / "vocab.json").write_text(json.dumps({"a": 0, "b": 1, "ab": 2}))
    (tmp_path / "merges.txt").write_text("#version: 0.2\na b\n")
    with pytest.raises(TokenizerError, match=r"vocab.json has 3 BPE tokens, expected Qwen3's 151643"):
        build_qwen3_vl_tokenizer(tmp_path / "vocab.json", tmp_path / "merges.txt")
