"""Where does Grad-CAM put its heat on ``shapes``? (issue 8's localisation criterion)

Trains a small conv classifier (the test suite's CNN: three stages of two conv-BN-ReLU and a
2×2 max-pool, global average pool, linear) in a few settings and scores ``kcv explain``'s
Grad-CAM (:class:`kcv.viz.gradcam.GradCam`, default layer) on 128 validation images whose
object masks are known:

- mass inside the mask, overall and per class, and within one feature-map cell of it;
- the pointing game (Zhang et al., "Top-down Neural Attention by Excitation Backprop",
  ECCV 2016): how often the heat's peak lies inside the mask / within one cell of it;
- the ceiling of the upsampling alone: the mask itself, averaged down to the map's size and
  upsampled as a heat map.

    python benchmarks/gradcam_localization.py        # ~4 minutes on 2 CPU cores

Results go to stdout and to ``benchmarks/RESULTS.md`` between the markers
``<!-- gradcam:begin -->`` / ``<!-- gradcam:end -->``.
"""

from __future__ import annotations

import os
import platform
import re
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import kcv  # noqa: E402,F401
from kcv import registry, runs  # noqa: E402
from kcv.data import shapes  # noqa: E402
from kcv.layers import conv_bn_act, normalized_input  # noqa: E402
from kcv.train import TrainConfig, train  # noqa: E402
from kcv.viz.gradcam import GradCam, dilate, mass_inside, upsample  # noqa: E402

RESULTS = Path(__file__).with_name("RESULTS.md")
BEGIN, END = "<!-- gradcam:begin -->", "<!-- gradcam:end -->"
N_VAL = 128

# name -> (TrainConfig overrides, last stage's dilation). "fixture" is the test suite's run.
SETTINGS = {
    "fixture (32 px, 1600 images, 6 epochs)": (dict(data="shapes:1600", epochs=6, img_size=32), 1),
    "32 px, 3000 images, 8 epochs": (dict(data="shapes:3000", epochs=8, img_size=32), 1),
    "64 px, 3000 images, 8 epochs": (dict(data="shapes:3000", epochs=8, img_size=64), 1),
    "32 px, 3000 images, last stage dilated ×2": (dict(data="shapes:3000", epochs=8, img_size=32), 2),
}


def _builder(dilation):
    def build(num_classes, input_shape=(32, 32, 3), width=16):
        inputs, x = normalized_input(input_shape)
        for i, filters in enumerate((width, 2 * width, 4 * width)):
            d = dilation if i == 2 else 1
            x = conv_bn_act(x, filters, 3, dilation_rate=d, name=f"cnn_s{i}a")
            x = conv_bn_act(x, filters, 3, dilation_rate=d, name=f"cnn_s{i}b")
            x = keras.layers.MaxPooling2D(2, name=f"cnn_s{i}_pool")(x)  # Grad-CAM reads before it
        x = keras.layers.GlobalAveragePooling2D(name="cnn_gap")(x)
        return keras.Model(inputs, keras.layers.Dense(num_classes, name="logits")(x), name="cnn")
    return build


def score(run_dir) -> dict:
    """Localisation figures of the run's Grad-CAM on ``N_VAL`` validation images."""
    model, cfg = runs.load_run(run_dir)
    size = int(cfg["img_size"])
    samples = [shapes.make_sample(0, "val", i, size, "classification", with_mask=True) for i in range(N_VAL)]
    images = np.stack([s[0] for s in samples]).astype("float32")
    labels = np.array([s[1] for s in samples])
    masks = np.stack([s[2] for s in samples]) > 0
    cam = GradCam(model)
    heat, predicted, _ = cam(images)
    h = cam.map_shape[0]
    cell = size // h
    near = np.stack([dilate(m, cell) for m in masks])
    inside = np.array([mass_inside(x, m) for x, m in zip(heat, masks)])
    peaks = [np.unravel_index(upsample(x, (size, size)).argmax(), (size, size)) for x in heat]
    ceiling = [mass_inside(m.reshape(h, cell, h, cell).mean(axis=(1, 3)), m) for m in masks]
    return {
        "accuracy": float((predicted == labels).mean()),
        "map": f"{h}x{h}",
        "inside": inside.mean(),
        **{name: inside[labels == c].mean() for c, name in enumerate(shapes.SHAPE_NAMES)},
        "near": np.mean([mass_inside(x, m) for x, m in zip(heat, near)]),
        "peak_inside": np.mean([m[p] for m, p in zip(masks, peaks)]),
        "peak_near": np.mean([m[p] for m, p in zip(near, peaks)]),
        "ceiling": float(np.mean(ceiling)),
        "area": masks.mean(),
        **{f"area_{name}": masks[labels == c].mean() for c, name in enumerate(shapes.SHAPE_NAMES)},
    }


def main() -> None:
    registry._ensure_loaded()
    rows = []
    with tempfile.TemporaryDirectory() as root:
        for i, (name, (overrides, dilation)) in enumerate(SETTINGS.items()):
            arch = f"bench_gradcam_cnn{i}"
            registry.register(arch, task="classification", family="bench", min_size=32,
                              train_defaults={"batch_size": 16, "lr": 3e-3})(_builder(dilation))
            t0 = time.time()
            run = train(TrainConfig(arch=arch, augment="none", out=root, name=arch, verbose=0, **overrides))
            rows.append((name, score(run), time.time() - t0))
            print(name, {k: round(float(v), 3) if not isinstance(v, str) else v for k, v in rows[-1][1].items()},
                  flush=True)
            keras.backend.clear_session()
    s0 = rows[0][1]
    lines = [
        f"### Grad-CAM localisation (`benchmarks/gradcam_localization.py`, {time.strftime('%Y-%m-%d')})",
        "",
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores; TF {__import__('tensorflow').__version__}, "
        f"Keras {keras.__version__}. {N_VAL} validation images; mask area {s0['area']:.3f} of the image "
        f"(circle {s0['area_circle']:.3f}, square {s0['area_square']:.3f}, triangle {s0['area_triangle']:.3f}).",
        "",
        "| classifier | val acc | map | mass in mask | circle | square | triangle | within 1 cell "
        "| peak in mask | peak within 1 cell | mask-as-heat ceiling |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, s, _ in rows:
        lines.append(f"| {name} | {s['accuracy']:.3f} | {s['map']} | **{s['inside']:.3f}** | {s['circle']:.3f} "
                     f"| {s['square']:.3f} | {s['triangle']:.3f} | {s['near']:.3f} | {s['peak_inside']:.3f} "
                     f"| {s['peak_near']:.3f} | {s['ceiling']:.3f} |")
    table = "\n".join(lines)
    print(table)
    text = RESULTS.read_text()
    block = f"{BEGIN}\n{table}\n{END}"
    if BEGIN in text:
        text = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: block, text, flags=re.S)
    else:
        text = text.rstrip() + "\n\n## Grad-CAM localisation on shapes (issue 8)\n\n" + block + "\n"
    RESULTS.write_text(text)


if __name__ == "__main__":
    main()
