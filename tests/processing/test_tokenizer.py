"""Tokenizer and prompt: the golden ids of eagle-tokenizer.md §2.5 on the real files, agreement with
transformers, the Eagle-from-Qwen rebuild, save/load, synthetic tokenizers and every failure path."""

from __future__ import annotations

import json
import random
import sys
import time

import numpy as np
import pytest

from gr00t_trt.base.errors import TokenizerError
from gr00t_trt.families.n16.presets import preset_config
from gr00t_trt.families.n16.synthetic_processor import build_synthetic_tokenizer
from gr00t_trt.processing import prompt as prompt_mod
from gr00t_trt.processing.prompt import (
    EAGLE_CHAT_TEMPLATE,
    build_prompt,
    eagle_chat_text,
    expand_image_placeholders,
    formalize_language,
    render_chat,
)
from gr00t_trt.processing.tokenizer import (
    EAGLE_ADDED_TOKENS,
    QWEN_ADDED_TOKENS,
    EagleTokenizer,
    add_tokens_in_order,
    load_tokenizer,
    qwen2_tokenizer,
    resolve_tokenizer,
    save_tokenizer,
)

GOLDEN_108 = (
    [151644, 8948, 198, 2610, 525, 264, 10950, 17847, 13, 151645, 198]
    + [151644, 872, 198]
    + [29245, 705, 279, 23268]
    + [27, 1805, 220, 16, 29]
    + [151670] + [151669] * 81 + [151671]
    + [151645, 198]
)


def random_strings(n: int, seed: int = 0) -> list[str]:
    """ASCII, Latin, CJK, emoji, whitespace runs, digits and special-token fragments, mixed."""
    rng = random.Random(seed)
    pools = [
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
        "0123456789",
        " \t\n\r  ",
        ".,;:!?'\"()[]{}<>/\\|-_=+*&^%$#@~`",
        "éèêàçüöäßñøåœÆ",
        "机器人抓取苹果桌子上的红色方块",
        "🤖🍎👍🏽✨",
    ]
    pieces = ["<IMG_CONTEXT>", "<img>", "</img>", "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<think>",
              "'s", "'ll", " pick up the apple", "<image 1>", "\n\n", "   "]  # fmt: skip
    out = []
    for _ in range(n):
        parts = []
        for _ in range(rng.randint(1, 8)):
            if rng.random() < 0.2:
                parts.append(rng.choice(pieces))
            else:
                pool = rng.choice(pools)
                parts.append("".join(rng.choice(pool) for _ in range(rng.randint(1, 12))))
        out.append("".join(parts))
    return out


# ------------------------------------------------------------------------------------------ golden
def test_golden_108_ids(eagle_tokenizer):
    text = build_prompt("pick up the apple", [(252, 252)])
    assert text == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\npick up the apple"
        "<image 1><img>" + "<IMG_CONTEXT>" * 81 + "</img><|im_end|>\n"
    )
    assert eagle_tokenizer.encode(text) == GOLDEN_108


def test_golden_ids_survive_formalization(eagle_tokenizer):
    assert eagle_tokenizer.encode(build_prompt("Pick up the APPLE!!", [(252, 252)])) == GOLDEN_108


@pytest.mark.parametrize(
    ("sizes", "length"),
    [([(252, 336)], 135), ([(252, 252), (252, 252)], 196), ([(252, 308)], 126), ([(252, 448)], 171)],
)
def test_other_sequence_lengths(eagle_tokenizer, sizes, length):
    ids = eagle_tokenizer.encode(build_prompt("pick up the apple", sizes))
    assert len(ids) == length
    assert len(ids) == 16 + 4 + sum(h * w // 784 + 7 for h, w in sizes)


def test_second_image_label(eagle_tokenizer):
    ids = eagle_tokenizer.encode(build_prompt("pick up the apple", [(252, 252), (252, 252)]))
    start = 18 + 5 + 83
    assert ids[start : start + 5] == [27, 1805, 220, 17, 29]


def test_no_special_tokens_are_added(eagle_tokenizer):
    assert eagle_tokenizer.encode("hello") == eagle_tokenizer.tokenizer.encode("hello").ids
    assert eagle_tokenizer.pad_token_id == 151643 and eagle_tokenizer.eos_token_id == 151645
    assert len(eagle_tokenizer) == 151680 and eagle_tokenizer.image_token_index == 151669


# ------------------------------------------------------------------------------------------ template
def test_embedded_template_is_the_real_one(eagle_dir):
    assert json.loads((eagle_dir / "chat_template.json").read_text())["chat_template"] == EAGLE_CHAT_TEMPLATE


@pytest.mark.parametrize("num_images", [0, 1, 2, 3, 5])
@pytest.mark.parametrize("text", ["pick up the apple", "", "multi\nline  text", "{{ not jinja }}"])
def test_jinja_and_builtin_rendering_agree(eagle_dir, text, num_images):
    pytest.importorskip("jinja2")
    template = json.loads((eagle_dir / "chat_template.json").read_text())["chat_template"]
    assert prompt_mod.render_with_jinja(template, text, num_images) == eagle_chat_text(text, num_images)
    assert render_chat(template, text, num_images) == eagle_chat_text(text, num_images)


def test_rendering_without_jinja2(monkeypatch):
    for name in [m for m in sys.modules if m == "jinja2" or m.startswith("jinja2.")] + ["jinja2"]:
        monkeypatch.setitem(sys.modules, name, None)  # import jinja2.<anything> now fails
    prompt_mod.chat_frame.cache_clear()
    try:
        assert render_chat(EAGLE_CHAT_TEMPLATE, "x", 2) == eagle_chat_text("x", 2)
        with pytest.raises(TokenizerError, match="jinja2 is not installed"):
            render_chat("{{ messages }}", "x", 1)
    finally:
        prompt_mod.chat_frame.cache_clear()


# issue 17, item 16: a sha-matching template is trusted code, still rendered bounded and only once per shape
OTHER_TEMPLATE = EAGLE_CHAT_TEMPLATE.replace("You are a helpful assistant.", "You drive a robot.")


@pytest.mark.parametrize("template, match", [
    ("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}{{ messages }}",
     "did not render within 2 s"),
    ("{{ 'x' * 100000000 }}", "renders more than 1,048,576 characters|did not render within 2 s"),
    ("{{ messages[0]['content'][0]['text'] }}{{ messages[0]['content'][0]['text'] }}", "exactly once, verbatim"),
])
def test_hostile_templates_fail_in_one_line_within_the_bounds(template, match, monkeypatch):
    pytest.importorskip("jinja2")
    monkeypatch.setattr(prompt_mod, "RENDER_SECONDS", 2.0)
    prompt_mod.chat_frame.cache_clear()
    start = time.monotonic()
    with pytest.raises(TokenizerError, match=match):
        render_chat(template, "pick up the apple", 1)
    assert time.monotonic() - start < 10


def test_a_template_renders_once_per_image_count(monkeypatch):
    pytest.importorskip("jinja2")
    prompt_mod.chat_frame.cache_clear()
    calls = []
    real = prompt_mod.render_with_jinja
    monkeypatch.setattr(prompt_mod, "render_with_jinja", lambda *a: calls.append(a[2]) or real(*a))
    texts = [render_chat(OTHER_TEMPLATE, f"task {k}", n) for k in range(5) for n in (1, 2)]
    assert calls == [1, 2]  # one render per prompt shape, none per instruction
    assert texts[0] == eagle_chat_text("task 0", 1).replace("You are a helpful assistant.", "You drive a robot.")


def test_formalize_language():
    assert formalize_language("Pick up the <IMG_CONTEXT> apple, please!") == "pick up the img_context apple please"
    assert formalize_language("  Tabs\tand\nnewlines stay ") == "  tabs\tand\nnewlines stay "
    assert formalize_language("Élan 42%") == "élan 42"


def test_placeholder_errors():
    with pytest.raises(TokenizerError, match="only 1 images"):
        expand_image_placeholders("<image-2>", [81])
    with pytest.raises(TokenizerError, match="whole number"):
        build_prompt("x", [(250, 252)])


# ------------------------------------------------------------------------------------------ transformers
@pytest.fixture(scope="module")
def hf_tokenizer(eagle_dir):
    # only an absent transformers skips; any failure to load the real files is a failure
    transformers = pytest.importorskip("transformers", reason="transformers is not installed")
    return transformers.AutoTokenizer.from_pretrained(str(eagle_dir), trust_remote_code=False, local_files_only=True)


def test_ids_match_transformers(eagle_tokenizer, hf_tokenizer):
    assert len(hf_tokenizer) == len(eagle_tokenizer)
    texts = random_strings(300) + [build_prompt("pick up the apple", [(252, 336), (252, 252)])]
    for text in texts:
        assert eagle_tokenizer.encode(text) == hf_tokenizer(text, add_special_tokens=False).input_ids, repr(text)


# ------------------------------------------------------------------------------------------ rebuilds
@pytest.fixture(scope="module")
def qwen_only_dir(eagle_dir, tmp_path_factory):
    """What Qwen/Qwen3-1.7B's tokenizer.json holds: the same BPE + Qwen's 26 added tokens only."""
    from tokenizers import AddedToken

    tok = qwen2_tokenizer(eagle_dir / "vocab.json", eagle_dir / "merges.txt")
    added = [AddedToken(t, special=s, normalized=False) for t, s in QWEN_ADDED_TOKENS]
    add_tokens_in_order(tok, added, tok.get_vocab_size(), "qwen")
    out = tmp_path_factory.mktemp("qwen")
    tok.save(str(out / "tokenizer.json"))
    return out


def test_eagle_from_qwen_rebuild(eagle_tokenizer, qwen_only_dir):
    rebuilt = resolve_tokenizer(None, str(qwen_only_dir), image_token_index=151669, vocab_size=151680)
    assert rebuilt.chat_template == EAGLE_CHAT_TEMPLATE
    for i, token in enumerate(EAGLE_ADDED_TOKENS):
        assert rebuilt.token_id(token) == 151669 + i
    assert rebuilt.encode(build_prompt("pick up the apple", [(252, 252)])) == GOLDEN_108
    for text in random_strings(200, seed=1):
        assert rebuilt.encode(text) == eagle_tokenizer.encode(text), repr(text)


def test_default_resolution_downloads_qwen(monkeypatch, qwen_only_dir, tmp_path):
    import huggingface_hub

    def fake_download(repo_id, filename, **kwargs):
        assert repo_id == "Qwen/Qwen3-1.7B"
        path = qwen_only_dir / filename
        if not path.exists():
            raise FileNotFoundError(filename)
        return str(path)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    tok = resolve_tokenizer(tmp_path, None, image_token_index=151669, vocab_size=151680)
    assert tok.encode(build_prompt("pick up the apple", [(252, 252)])) == GOLDEN_108


def test_offline_resolution_says_what_to_do(monkeypatch, tmp_path):
    import huggingface_hub

    def offline(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", offline)
    with pytest.raises(TokenizerError, match=r"Qwen/Qwen3-1.7B.*pass --tokenizer PATH"):
        resolve_tokenizer(tmp_path, None, image_token_index=151669, vocab_size=151680)


def test_checkpoint_folder_tokenizer_is_used(eagle_dir):
    tok = resolve_tokenizer(eagle_dir, None, image_token_index=151669, vocab_size=151680)
    assert tok.encode(build_prompt("pick up the apple", [(252, 252)])) == GOLDEN_108


@pytest.mark.parametrize(
    ("index", "vocab", "match"),
    [(151668, 151680, r"image tokens map to .*expected"), (151669, 151936, r"151680 tokens, expected the LLM vocab_size 151936")],
)
def test_resolution_checks_ids_and_size(eagle_dir, index, vocab, match):
    with pytest.raises(TokenizerError, match=match):
        resolve_tokenizer(eagle_dir, None, image_token_index=index, vocab_size=vocab)


def test_missing_tokenizer_files(tmp_path):
    with pytest.raises(TokenizerError, match="no tokenizer in"):
        load_tokenizer(tmp_path)


# ------------------------------------------------------------------------------------------ save/load
def test_save_and_load_round_trip(eagle_tokenizer, tmp_path):
    written = save_tokenizer(eagle_tokenizer, tmp_path)
    assert sorted(p.name for p in written) == ["chat_template.json", "tokenizer.json", "tokenizer_config.json"]
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert config["gr00t_trt"]["pad_token_id"] == 151643 and config["padding_side"] == "left"
    loaded = load_tokenizer(tmp_path)
    assert loaded.chat_template == EAGLE_CHAT_TEMPLATE
    assert (loaded.pad_token_id, loaded.eos_token_id, len(loaded)) == (151643, 151645, 151680)
    for text in random_strings(100, seed=2) + [build_prompt("pick up the apple", [(252, 252)])]:
        assert loaded.encode(text) == eagle_tokenizer.encode(text)


def test_batch_is_left_padded(eagle_tokenizer):
    a = eagle_tokenizer.encode(build_prompt("pick up the apple", [(252, 252)]))
    b = eagle_tokenizer.encode(build_prompt("pick up the apple and put it in the bowl", [(252, 252)]))
    ids, mask = eagle_tokenizer.batch([a, b])
    pad = len(b) - len(a)
    assert ids.dtype == np.int64 and mask.dtype == bool and ids.shape == (2, len(b))
    assert (ids[0, :pad] == 151643).all() and not mask[0, :pad].any() and mask[0, pad:].all()
    assert ids[0, pad:].tolist() == a and ids[1].tolist() == b and mask[1].all()


# ------------------------------------------------------------------------------------------ synthetic
@pytest.mark.parametrize("preset", ["tiny", "small", "full"])
def test_synthetic_tokenizer_layout(preset, eagle_dir):
    config = preset_config(preset)
    tok = build_synthetic_tokenizer(config)
    tok.check(config.backbone.image_token_index, config.backbone.text.vocab_size)
    base = config.backbone.image_token_index - 26
    assert tok.pad_token_id == base and tok.eos_token_id == base + 2
    real = json.loads((eagle_dir / "tokenizer_config.json").read_text())["added_tokens_decoder"]
    real_layout = [(v["content"], v["special"]) for _, v in sorted(real.items(), key=lambda kv: int(kv[0]))]
    ours = [(tok.tokenizer.id_to_token(base + i), tok.tokenizer.id_to_token(base + i) in {t for t, s in real_layout if s})
            for i in range(37)]  # fmt: skip
    assert ours == real_layout
    ids = tok.encode(build_prompt("Pick up the red block", [(252, 252)]))
    assert ids.count(config.backbone.image_token_index) == 81
    assert tok.decode(ids).startswith("<|im_start|>system\nYou are a helpful assistant.")
    assert max(ids) < config.backbone.text.vocab_size


def test_synthetic_tokenizer_is_deterministic():
    config = preset_config("tiny")
    assert build_synthetic_tokenizer(config).tokenizer.to_str() == build_synthetic_tokenizer(config).tokenizer.to_str()


def test_eagle_tokenizer_is_a_frozen_dataclass(eagle_tokenizer):
    assert isinstance(eagle_tokenizer, EagleTokenizer)
    with pytest.raises(AttributeError):
        eagle_tokenizer.pad_token = "x"


def test_override_paths(eagle_tokenizer, tmp_path):
    with pytest.raises(TokenizerError, match=r"tokenizer '/no/such/dir' not found"):
        resolve_tokenizer(None, "/no/such/dir", image_token_index=151669, vocab_size=151680)
    eagle_tokenizer.tokenizer.save(str(tmp_path / "tokenizer.json"))
    tok = resolve_tokenizer(None, str(tmp_path / "tokenizer.json"), image_token_index=151669, vocab_size=151680)
    assert tok.encode(build_prompt("pick up the apple", [(252, 252)])) == GOLDEN_108
