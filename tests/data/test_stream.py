"""The streaming input pipeline: lazily built epochs, deterministic order whatever holds
the images (files, memory, disk) or how many workers read them, and memory that does not
grow with the number of images."""

import json
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

from kcv.data import pipeline
from kcv.data.pipeline import load_data
from tests.conftest import write_classification_folders, write_segmentation_folders


def batches(ds, n=None):
    out = []
    for i, (x, y) in enumerate(ds.as_numpy_iterator()):
        if n is not None and i == n:
            break
        out.append((x, y))
    return out


def test_a_huge_epoch_count_starts_at_once():
    # issue 17 item 9: one pipeline per epoch was built up front (1000 epochs: 30 s, 1.09 GB)
    src = load_data("shapes:16", "classification", 32)
    got = {}

    def first_batch():
        got["batch"] = next(iter(src.train_stream(8, seed=0, epochs=10**12)))

    worker = threading.Thread(target=first_batch, daemon=True)
    worker.start()
    # generous for a loaded CI machine: before the fix it never returned
    worker.join(timeout=180)
    assert "batch" in got, "no first batch within 180 s"
    x, y = got["batch"]
    assert x.shape == (8, 32, 32, 3) and y.shape == (8,)


def test_each_epoch_is_the_same_whatever_the_start_and_the_total():
    src = load_data("shapes:16", "classification", 32)
    full = batches(src.train_stream(16, seed=3, epochs=3))  # one batch per epoch
    tail = batches(src.train_stream(16, seed=3, epochs=3, initial_epoch=1))
    longer = batches(src.train_stream(16, seed=3, epochs=50), n=3)
    assert len(full) == 3 and len(tail) == 2
    for a, b in zip(full[1:], tail):
        np.testing.assert_array_equal(a[0], b[0])
    for a, b in zip(full, longer):
        np.testing.assert_array_equal(a[0], b[0])
    # each epoch is a permutation of the training split, a different one each epoch
    labels = src.arrays("train")[1]
    for x, y in full:
        assert sorted(y) == sorted(labels)
    assert not np.array_equal(full[0][1], full[1][1]) or not np.array_equal(full[1][1], full[2][1])
    order = pipeline.epoch_order(3, 1, 16).numpy()
    np.testing.assert_array_equal(full[1][1], labels[order])


@pytest.mark.parametrize("task", ["classification", "segmentation"])
def test_cache_modes_give_the_same_batches(task, tmp_path, monkeypatch):
    data = tmp_path / "data"
    (write_classification_folders if task == "classification" else write_segmentation_folders)(data)
    src = load_data(str(data), task, 32)
    assert src.cache == "none"
    streams = {}
    for mode in ("none", "memory", "disk"):
        cached = src.cached(mode, tmp_path / "cache")
        assert cached.cache == mode
        streams[mode] = batches(cached.train_stream(4, seed=1, epochs=2))
    for mode in ("memory", "disk"):
        for (xa, ya), (xb, yb) in zip(streams["none"], streams[mode]):
            np.testing.assert_array_equal(xa, xb)
            np.testing.assert_array_equal(ya, yb)
    # the disk cache is reused while the files are unchanged
    marker = tmp_path / "cache" / "train" / "complete.json"
    stamp = marker.stat().st_mtime_ns
    src.cached("disk", tmp_path / "cache")
    assert marker.stat().st_mtime_ns == stamp
    # auto: memory within the budget, streaming beyond it
    assert src.cached("auto").cache == "memory"
    monkeypatch.setattr(pipeline, "MEMORY_BUDGET", src.decoded_bytes - 1)
    assert src.cached("auto").cache == "none"


@pytest.mark.parametrize("crop", [None, 24])
def test_workers_read_their_own_slices_of_the_one_worker_batches(crop, tmp_path):
    from kcv.data.crop import Crop

    write_segmentation_folders(tmp_path, n=12)
    src = load_data(str(tmp_path), "segmentation", 32, crop=Crop(crop) if crop else None)
    one = batches(src.train_stream(4, seed=2, epochs=2, drop_remainder=True))
    parts = [batches(src.train_stream(4, seed=2, epochs=2, drop_remainder=True, shard=(w, 2)))
             for w in range(2)]
    assert len(one) == len(parts[0]) == len(parts[1]) == 4  # 2 epochs x 8 images // 4
    for (x, y), (x0, y0), (x1, y1) in zip(one, *parts):
        assert len(x0) == len(x1) == 2  # each worker decodes half of every global batch
        np.testing.assert_array_equal(np.concatenate([x0, x1]), x)
        np.testing.assert_array_equal(np.concatenate([y0, y1]), y)


def test_streaming_memory_does_not_grow_with_the_data_set(tmp_path):
    # A real measurement: peak RSS of one epoch over N and 4N files, in fresh processes.
    # The memory cache is the control: it must show the growth that streaming must not.
    def probe(mode):
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
        out = subprocess.run([sys.executable, "-m", "tests.data.memory_probe", str(tmp_path), mode, "60"],
                             capture_output=True, text=True, timeout=300, env=env)
        assert out.returncode == 0, out.stderr[-2000:]
        return json.loads(out.stdout.strip().splitlines()[-1])

    per_image_kib = 192 * 192 * 3 / 1024  # 108 KiB decoded
    extra = 3 * 60 * per_image_kib  # the 4N set holds 180 more images than the N set
    stream, memory = probe("none"), probe("memory")
    assert stream["cache"] == "none" and memory["cache"] == "memory"
    grew = {m["mode"]: m["4n"] - m["n"] for m in (stream, memory)}
    assert grew["memory"] > 0.6 * (extra + 60 * per_image_kib), grew  # the 4N set is held
    assert grew["none"] < 0.25 * extra, grew


def test_per_file_state_is_a_path_and_a_label(tmp_path):
    # What a source keeps per file, and the peak of its up-front check of every file, by
    # the Python heap (tracemalloc also sees NumPy's buffers), from N to 4N files: cheap and
    # exact where RSS would need ~10k files to rise above its noise. Measured (this test's
    # paths, 33 bytes): ~140 B kept and ~0.6 KB of peak per file; before, a split of
    # (PosixPath, int) tuples kept ~510 B, and the check's Future per file peaked at ~2.2 KB.
    import gc
    import tracemalloc

    from tests.data.memory_probe import write_folder

    def per_source(n):
        folder = write_folder(tmp_path / f"f{n}", n)
        gc.collect()
        tracemalloc.start()
        try:
            source = load_data(str(folder), "classification", 32)
            gc.collect()
            kept, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert source.num_train + source.num_val == n
        return kept, peak

    per_source(16)  # one-time costs (imports, TensorFlow's caches) land here
    (kept_n, peak_n), (kept_4n, peak_4n) = per_source(100), per_source(400)
    path = len(os.fsencode(str(tmp_path / "f400" / "train" / "c0" / "399.png")))
    assert (kept_4n - kept_n) / 300 < 2 * path + 128, (kept_n, kept_4n)
    assert (peak_4n - peak_n) / 300 < 1200, (peak_n, peak_4n)
