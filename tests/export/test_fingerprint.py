"""The checkpoint fingerprint an export records: headers and a weight sample, cheap (issue 7: 15)."""

from __future__ import annotations

import shutil
import time

from gr00t_trt.export.driver import fingerprint
from gr00t_trt.families.n16.presets import preset_config
from gr00t_trt.families.n16.synthetic import make_checkpoint, make_header_only_checkpoint


def test_fingerprint_tells_other_weights_of_the_same_config_apart(tiny_checkpoint, tmp_path):
    other = make_checkpoint(tmp_path / "seed1", "tiny", seed=1)
    for name in ("config.json", "model.safetensors.index.json"):  # same config and index, only weights differ
        shutil.copyfile(tiny_checkpoint / name, other / name)
    assert fingerprint(other) != fingerprint(tiny_checkpoint)
    assert fingerprint(tiny_checkpoint) == fingerprint(tiny_checkpoint)


def test_fingerprint_hashes_headers_not_only_sizes(tiny_checkpoint, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(tiny_checkpoint, copy)
    shard = sorted(copy.glob("*.safetensors"))[0]
    raw = bytearray(shard.read_bytes())
    at = raw.index(b'"format":"pt"')
    raw[at : at + 13] = b'"format":"xx"'  # same size, different header
    shard.write_bytes(bytes(raw))
    assert fingerprint(copy) != fingerprint(tiny_checkpoint)


def test_fingerprint_of_the_full_size_checkpoint_reads_no_weights(tmp_path):
    folder = make_header_only_checkpoint(tmp_path / "full", preset_config("full"))  # 6.6 GB of sparse holes
    started = time.perf_counter()
    fingerprint(folder)
    assert time.perf_counter() - started < 2.0
