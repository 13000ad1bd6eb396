"""How exactly kcv's ImageNet models reproduce keras.applications (benchmarks/RESULTS.md).

For each of the 17 models keras.applications publishes ImageNet weights for: build the
keras.applications network with random weights (BatchNorm statistics and biases included),
save it under keras.applications' file name in a scratch KERAS_HOME, load
``kcv.create_model(name, 1000, (S, S, 3), weights="imagenet")`` from it, and compare logits
on raw [0, 255] RGB images with the reference's on its own ``preprocess_input``. Each model
runs in a fresh process (VGG at 224 px holds ~4 GB). Nothing touches the network.

    python benchmarks/imagenet_exactness.py                 # all 17 at 224 px
    python benchmarks/imagenet_exactness.py --models vgg16,resnet50 --size 64
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODELS = ["vgg16", "vgg19", "resnet50", "resnet101", "resnet152", "densenet121", "densenet169",
          "densenet201", "mobilenet_v2"] + [f"efficientnet_b{b}" for b in range(8)]

CHILD = """
import json, sys
from tests.models.imagenet_reference import compare
print("RESULT " + json.dumps(compare(sys.argv[1], int(sys.argv[2]))), flush=True)
"""


def run_one(arch: str, size: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="kcv-imagenet-") as home:
        env = {**os.environ, "KERAS_HOME": home, "KCV_OFFLINE": "1", "PYTHONPATH": str(ROOT),
               "TF_CPP_MIN_LOG_LEVEL": "3"}
        out = subprocess.run([sys.executable, "-c", CHILD, arch, str(size)], env=env, cwd=ROOT,
                             capture_output=True, text=True, check=False)
        line = next((ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")), None)
        if line is None:
            raise SystemExit(f"{arch}: failed\n{out.stderr[-3000:]}")
        return json.loads(line[len("RESULT "):])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--size", type=int, default=224)
    args = parser.parse_args(argv)
    import keras
    import tensorflow as tf

    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}, TensorFlow {tf.__version__}, Keras {keras.__version__}; "
          f"{args.size} px, batch 2, random weights", flush=True)
    print("| model | max \\|Δlogit\\| | max \\|logit\\| | relative | build + load (s) |")
    print("|---|---:|---:|---:|---:|")
    for arch in args.models.split(","):
        r = run_one(arch, args.size)
        print(f"| `{arch}` | {r['max_delta']:.2e} | {r['max_logit']:.3g} | {r['relative']:.2e} | "
              f"{r['build_and_load_s']:.1f} |", flush=True)


if __name__ == "__main__":
    main()
