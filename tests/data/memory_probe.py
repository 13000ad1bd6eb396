"""Peak RSS of one training epoch over N and then 4N image files (run as a script).

``python -m tests.data.memory_probe ROOT MODE N`` writes two classification folders of
N and 4N tiny PNGs under ROOT, decodes them at 192 px (110 KB per image), iterates one
epoch of each through ``DataSource.train_stream`` with ``--cache MODE`` (both sources kept
alive, as a cache would be), and prints JSON: ``ru_maxrss`` in KiB after a warm-up epoch,
after the N epoch and after the 4N epoch.
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


def peak_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def main(root: str, mode: str, n: int) -> None:
    from kcv.data.pipeline import load_data

    kept, peaks = [], {}
    for name, count in (("warmup", 16), ("n", n), ("4n", 4 * n)):
        folder = write_folder(Path(root) / f"{mode}-{name}", count)
        source = load_data(str(folder), "classification", SIZE).cached(mode)
        for _ in source.train_stream(16, seed=0, epochs=1):
            pass
        kept.append(source)
        peaks[name] = peak_kib()
    print(json.dumps({"mode": mode, "cache": kept[-1].cache, **peaks}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
