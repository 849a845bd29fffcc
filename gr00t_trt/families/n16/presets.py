"""Sizes of synthetic checkpoints: ``tiny`` (tests, well under a second per forward on CPU), ``small``
(benchmarks, verification at moderate size) and ``full`` (the real N1.6 sizes).

Synthetic checkpoints use the real file layout and key names; only the sizes differ. The LLM vocab
size is decided by the synthetic tokenizer (base BPE size + the 37 Qwen/Eagle added tokens), so the
presets give the *base* BPE size and ``image_token_index`` follows from it.
"""

from __future__ import annotations

from dataclasses import replace

from .config import (
    EAGLE_BLOCK2A_2B_V2_CONFIG,
    BackboneConfig,
    DiTConfig,
    Gr00tConfig,
    TextConfig,
    VisionConfig,
)

#: Qwen3 adds 26 tokens after the base BPE vocabulary; Eagle then adds 11 (<IMG_CONTEXT> first).
QWEN_ADDED_TOKENS = 26
EAGLE_ADDED_TOKENS = 11

#: base (regular) BPE vocabulary size of each preset's tokenizer; full = Qwen3's 151,643
BASE_VOCAB = {"tiny": 1024, "small": 2048, "full": 151_643}


def vocab_layout(base_vocab: int) -> tuple[int, int]:
    """(image_token_index, vocab_size) for a tokenizer with ``base_vocab`` regular tokens."""
    image_token_index = base_vocab + QWEN_ADDED_TOKENS
    return image_token_index, image_token_index + EAGLE_ADDED_TOKENS


def preset_config(name: str) -> Gr00tConfig:
    """The model config of a synthetic preset."""
    if name not in BASE_VOCAB:
        raise ValueError(f"unknown preset {name!r} — expected one of: {', '.join(BASE_VOCAB)}")
    if name == "full":
        return Gr00tConfig(backbone=EAGLE_BLOCK2A_2B_V2_CONFIG)
    image_token_index, vocab_size = vocab_layout(BASE_VOCAB[name])
    if name == "tiny":
        vision = VisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                              patch_size=14, num_patches=16)
        text = TextConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=4,
                          num_key_value_heads=2, head_dim=16, vocab_size=vocab_size)
        dit = DiTConfig(num_layers=4, num_attention_heads=4, attention_head_dim=8, output_dim=32)
        return Gr00tConfig(
            backbone=BackboneConfig(vision=vision, text=text, image_token_index=image_token_index),
            select_layer=2, backbone_embedding_dim=64, max_state_dim=16, max_action_dim=16,
            action_horizon=16, hidden_size=32, input_embedding_dim=32, max_seq_len=64, dit=dit,
        )
    vision = VisionConfig(hidden_size=128, intermediate_size=256, num_hidden_layers=4, num_attention_heads=4,
                          patch_size=14, num_patches=256)
    text = TextConfig(hidden_size=256, intermediate_size=512, num_hidden_layers=6, num_attention_heads=8,
                      num_key_value_heads=4, head_dim=32, vocab_size=vocab_size)
    dit = DiTConfig(num_layers=8, num_attention_heads=8, attention_head_dim=32, output_dim=128)
    return Gr00tConfig(
        backbone=BackboneConfig(vision=vision, text=text, image_token_index=image_token_index),
        select_layer=4, backbone_embedding_dim=256, max_state_dim=64, max_action_dim=64,
        action_horizon=50, hidden_size=128, input_embedding_dim=256, max_seq_len=128, dit=dit,
    )


def with_model_name(config: Gr00tConfig, model_name: str) -> Gr00tConfig:
    return replace(config, model_name=model_name)
