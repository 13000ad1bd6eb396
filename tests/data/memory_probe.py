"""Peak RSS of one training epoch over N and then 4N image files (run as a script).

``python -m tests.data.memory_probe ROOT MODE N`` writes two classification folders of
N and 4N tiny PNGs under ROOT, decodes them at 192 px (110 KB per image), iterates one
epoch of each through ``DataSource.train_stream`` with ``--cache MODE`` (both sources kept
alive, as a cache would be), and prints JSON: the peak RSS (VmHWM, KiB) of a warm-up epoch,
the N epoch and the 4N epoch, each measured from its own start.
"""

import json
import resource
import sys
from pathlib import Path

import numpy as np
from PIL import Image

SIZE = 192


def write_folder(root: Path, n: int) -> Path:
    rng = np.random.default_rng(n)
    for i in range(n):
        d = root / ("train" if i % 5 else "val") / f"c{i % 2}"
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), np.uint8)).save(d / f"{i}.png")
    return root


def reset_peak() -> None:
    """Start a new peak: writing 5 to clear_refs resets VmHWM (Linux ≥ 4.0). Without it the
    process-wide ru_maxrss keeps whatever transient peak came first (TensorFlow's start-up,
    the up-front decode check of every file) and hides what each epoch adds."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def peak_kib() -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def main(root: str, mode: str, n: int) -> None:
    from kcv.data.pipeline import load_data

    kept, peaks = [], {}
    for name, count in (("warmup", 16), ("n", n), ("4n", 4 * n)):
        folder = write_folder(Path(root) / f"{mode}-{name}", count)
        source = load_data(str(folder), "classification", SIZE).cached(mode)
        reset_peak()  # the epoch's own peak, with the earlier sources still held
        for _ in source.train_stream(16, seed=0, epochs=1):
            pass
        kept.append(source)
        peaks[name] = peak_kib()
    print(json.dumps({"mode": mode, "cache": kept[-1].cache, **peaks}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
