"""What an export serves — image sizes and batches — read from its manifest alone (stdlib only).

The one vision graph takes any H x W whose token grid (H/R rows, W/R columns, R = dims.R pixels) lies in
the manifest's dynamic dims r and c; the batch is bounded by B and the images of one size per call by n.
``inspect EXPORT`` prints these lines and the runtime's errors quote ``served_sizes``.
"""

from __future__ import annotations

from typing import Any


def served_sizes(manifest: Any) -> str:
    """``"HxW images with H and W multiples of 28, H in 252..588, W in 252..588"`` (or why none)."""
    dyn, side = manifest.dynamic_dims, manifest.dims.get("R")
    legacy = sorted(g.name for g in manifest.graphs.values() if g.kind == "vision" and g.name != "vision")
    if legacy:
        return f"only the sizes of its per-size vision graphs {', '.join(legacy)} (an older export: re-export)"
    if side is None or "r" not in dyn or "c" not in dyn or not any(g.kind == "vision" for g in manifest.graphs.values()):
        return "no images (the export has no vision graph)"
    r, c = dyn["r"], dyn["c"]
    return (f"HxW images with H and W multiples of {side}, H in {r[0] * side}..{r[-1] * side}, "
            f"W in {c[0] * side}..{c[-1] * side}")


def serving(manifest: Any) -> dict[str, Any]:
    """The sizes and batches an export serves, as ``inspect EXPORT --json`` records them."""
    dyn = manifest.dynamic_dims
    return {
        "images": served_sizes(manifest),
        "named_image_sizes": [f"{h}x{w}" for h, w in manifest.image_sizes],
        "batch": dyn.get("B", [1, 1, 1])[::2],
        "images_per_vision_call": dyn.get("n", [1, 1, 1])[-1],
        "sequence_length": dyn.get("S", [1, 1, 1])[-1],
    }


def serving_lines(manifest: Any) -> list[str]:
    """``inspect EXPORT``'s lines on what the export serves, without re-exporting."""
    s = serving(manifest)
    low, high = s["batch"]
    lines = [f"serves {s['images']} (checked at {', '.join(s['named_image_sizes']) or 'none'})",
             f"batch {low}..{high}, up to {s['images_per_vision_call']} images of one size per vision call, "
             f"prompts up to {s['sequence_length']} tokens"]
    return lines
