"""The exact text GR00T N1.6 feeds its tokenizer (eagle-tokenizer.md §2).

One user message — the instruction, then one image item per view and frame — rendered with the Eagle
chat template, then each ``<image-k>`` placeholder expanded to ``<image k><img>`` + n x
``<IMG_CONTEXT>`` + ``</img>`` with n = h'·w' / pixels_per_token of that (already resized) image.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Sequence
from functools import lru_cache

from ..base.errors import TokenizerError

IMAGE_TOKEN = "<IMG_CONTEXT>"
IMAGE_START_TOKEN = "<img>"
IMAGE_END_TOKEN = "</img>"

#: chat_template.json of Isaac-GR00T's vendored Eagle-Block2A-2B-v2 folder (N1.6), quoted as data.
EAGLE_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}"
    "{{ message['content'] }}<|im_end|>\n{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}"
    "<image {{ image_count.value }}>{% endif %}<image-{{ image_count.value }}>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}"
    "<video {{ video_count.value }}>{% endif %}<video-{{ video_count.value }}>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

_NOT_WORD_OR_SPACE = re.compile(r"[^\w\s]")
_PLACEHOLDER = re.compile(r"<(image|video)-(\d+)>")


def formalize_language(text: str) -> str:
    """GR00T's ``formalize_language``: lower-case, drop every character that is not a word character or
    whitespace (this also keeps user text from injecting ``<IMG_CONTEXT>``-like special tokens)."""
    return _NOT_WORD_OR_SPACE.sub("", text.lower())


def render_chat(template: str, instruction: str, num_images: int) -> str:
    """Render the chat template for one user message: text item first, then ``num_images`` images.

    The template runs once per image count (``chat_frame``, cached); each prompt is then the frame
    around the instruction, so a request never executes template code.
    """
    before, after = chat_frame(template, num_images)
    return before + instruction + after


def eagle_chat_text(instruction: str, num_images: int) -> str:
    """What the Eagle template renders for one user message (text, then images), without jinja2."""
    images = "".join(f"<image-{k}>" for k in range(1, num_images + 1))
    return (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        f"<|im_start|>user\n{instruction}{images}<|im_end|>\n"
    )


#: stands for the instruction while a template renders; must come out once and verbatim
_SENTINEL = "GR00TINSTRUCTIONSENTINEL7f3a"
#: a chat template is trusted code (its sha256 is in the manifest) but still rendered bounded
RENDER_SECONDS = 10.0
RENDER_MAX_CHARS = 1 << 20
RENDER_MAX_BYTES_OF_MEMORY = 1 << 30


@lru_cache(maxsize=64)
def chat_frame(template: str, num_images: int) -> tuple[str, str]:
    """The rendered text before and after the instruction for ``num_images`` images (Eagle's template
    directly, any other in a sandboxed, time-, memory- and size-bounded jinja2 subprocess)."""
    if template == EAGLE_CHAT_TEMPLATE:
        text = eagle_chat_text(_SENTINEL, num_images)
    else:
        text = render_with_jinja(template, _SENTINEL, num_images)
    if text.count(_SENTINEL) != 1:
        raise TokenizerError("the chat template does not place the instruction exactly once, verbatim — expected a "
                             "template that renders the user text as given (like Eagle's)")
    before, after = text.split(_SENTINEL)
    return before, after


_RENDER_CHILD = """
import json, resource, sys
request = json.loads(sys.stdin.read())
limit = request["memory"]
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment
env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
content = [{"type": "text", "text": request["instruction"]}] + [{"type": "image"}] * request["images"]
size, parts = 0, []
for chunk in env.from_string(request["template"]).generate(messages=[{"role": "user", "content": content}],
                                                          add_generation_prompt=False):
    size += len(chunk)
    if size > request["max_chars"]:
        sys.exit(3)
    parts.append(chunk)
sys.stdout.write(json.dumps("".join(parts)))
"""


def render_with_jinja(template: str, instruction: str, num_images: int) -> str:
    """Render with jinja2's immutable sandbox (transformers' settings) in a child process that is killed
    after RENDER_SECONDS, limited to RENDER_MAX_BYTES_OF_MEMORY and RENDER_MAX_CHARS of output: a template
    with nested ``range(100000)`` loops or ``'x' * 10**8`` fails in one line instead of hanging."""
    try:
        import jinja2  # noqa: F401 - only to refuse early when it is missing
    except ImportError:
        raise TokenizerError("the tokenizer's chat template is not Eagle's and jinja2 is not installed to render it "
                             "— install jinja2 or use the Eagle chat template") from None
    request = json.dumps({"template": template, "instruction": instruction, "images": num_images,
                          "max_chars": RENDER_MAX_CHARS, "memory": RENDER_MAX_BYTES_OF_MEMORY})
    try:
        done = subprocess.run([sys.executable, "-I", "-c", _RENDER_CHILD], input=request, capture_output=True,
                              text=True, timeout=RENDER_SECONDS)
    except subprocess.TimeoutExpired:
        raise TokenizerError(f"the chat template did not render within {RENDER_SECONDS:g} s — expected a template "
                             "like Eagle's (a few lines of text)") from None
    if done.returncode == 3:
        raise TokenizerError(f"the chat template renders more than {RENDER_MAX_CHARS:,} characters — expected a "
                             "template like Eagle's")
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise TokenizerError(f"the chat template cannot be rendered: {last[:200]}")
    return json.loads(done.stdout)


def image_token_count(height: int, width: int, pixels_per_token: int) -> int:
    """LLM tokens of one h' x w' image: h'·w' / (patch · unshuffle)² (784 for the real model)."""
    if (height * width) % pixels_per_token:
        raise TokenizerError(
            f"image {height}x{width} is not a whole number of {pixels_per_token}-pixel tokens — "
            "sizes must come from the image chain"
        )
    return height * width // pixels_per_token


def expand_image_placeholders(text: str, token_counts: Sequence[int]) -> str:
    """Replace ``<image-k>`` by ``<image k><img>`` + ``<IMG_CONTEXT>`` x n_k + ``</img>``."""

    def expand(match: re.Match) -> str:
        kind, k = match.group(1), int(match.group(2))
        if kind != "image":
            raise TokenizerError("video placeholders are not used by GR00T N1.6 prompts")
        if not 1 <= k <= len(token_counts):
            raise TokenizerError(f"prompt has <image-{k}> but only {len(token_counts)} images were given")
        return f"<image {k}>{IMAGE_START_TOKEN}{IMAGE_TOKEN * token_counts[k - 1]}{IMAGE_END_TOKEN}"

    return _PLACEHOLDER.sub(expand, text)


def build_prompt(
    instruction: str,
    image_sizes: Sequence[tuple[int, int]],
    *,
    pixels_per_token: int = 784,
    formalize: bool = True,
    template: str = EAGLE_CHAT_TEMPLATE,
) -> str:
    """The exact string GR00T tokenises for one sample (images in LLM order: time, then view)."""
    text = formalize_language(instruction) if formalize else instruction
    rendered = render_chat(template, text, len(image_sizes))
    counts = [image_token_count(h, w, pixels_per_token) for h, w in image_sizes]
    return expand_image_placeholders(rendered, counts)
