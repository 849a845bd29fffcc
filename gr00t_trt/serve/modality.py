"""What a served export expects, in the two shapes clients ask for it.

``modality_configs`` answers ``get_modality_config`` exactly as Isaac-GR00T does (one ``ModalityConfig``
per modality; its clients rebuild their own class from the fields, so no field may be added), and
``io_description`` carries what those configs cannot: per-key dtypes and shapes, horizon and image sizes
(sent with ``ping``). Both read only the export's processor files: no torch, no model code.
"""

from __future__ import annotations

from typing import Any

from .wire import ModalityConfig


def modality_configs(spec) -> dict[str, ModalityConfig]:
    """Isaac-GR00T's ``dict[modality, ModalityConfig]`` of one embodiment (an ``EmbodimentSpec``)."""
    action_configs = [
        {"rep": cfg.rep.name, "type": cfg.type.name, "format": cfg.format.name, "state_key": cfg.state_key or None}
        for cfg in (spec.action_configs[key] for key in spec.action_keys)
    ]
    return {
        "video": ModalityConfig(list(spec.video_delta_indices), list(spec.video_keys)),
        "state": ModalityConfig(
            list(spec.state_delta_indices),
            list(spec.state_keys),
            sin_cos_embedding_keys=list(spec.sin_cos_keys) or None,
            mean_std_embedding_keys=list(spec.state_mean_std_keys) or None,
        ),
        "action": ModalityConfig(
            list(spec.action_delta_indices),
            list(spec.action_keys),
            mean_std_embedding_keys=list(spec.action_mean_std_keys) or None,
            action_configs=action_configs,
        ),
        "language": ModalityConfig([0], [spec.language_key]),
    }


def io_description(spec, image_sizes) -> dict[str, Any]:
    """Keys, dtypes and shapes of one embodiment's observation and action (nested form; the flat form
    prefixes ``video.`` / ``state.`` / ``action.``). ``B``, ``H`` and ``W`` are free."""
    return {
        "observation": {
            "video": {key: {"dtype": "uint8", "shape": ["B", spec.num_frames, "H", "W", 3]} for key in spec.video_keys},
            "state": {
                key: {"dtype": "float32", "shape": ["B", len(spec.state_delta_indices), dim]}
                for key, dim in spec.state_dims.items()
            },
            "language": {spec.language_key: {"dtype": "str", "shape": ["B", 1]}},
        },
        "action": {
            key: {"dtype": "float32", "shape": ["B", spec.action_horizon, dim]} for key, dim in spec.action_dims.items()
        },
        "action_horizon": spec.action_horizon,
        "image_sizes": [list(size) for size in image_sizes],
    }
