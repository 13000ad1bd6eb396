"""``kcv explain``: Grad-CAM overlays of a trained classifier run on images.

One overlay PNG per image (the heat map of the explained class blended over the image at its
own resolution), written atomically to ``OUT/<image stem>_gradcam.png``, and one record per
image: the file, the explained class and its probability, the predicted class, the layer and
the overlay's path. See :mod:`kcv.viz.gradcam` for the method.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image

from kcv import runs
from kcv.errors import KcvError
from kcv.contracts import CONFIG_FILE, LAST_FILE

DEFAULT_OUT = "gradcam"


def class_index(class_names: list, name: str | None) -> int | None:
    """The index of ``--class NAME`` (a class name, or its index), ``None`` for the prediction."""
    if name is None:
        return None
    if name in class_names:
        return class_names.index(name)
    if name.isdigit() and int(name) < len(class_names):
        return int(name)
    raise KcvError(f"--class {name}: not a class of this run; choose one of {', '.join(map(str, class_names))}")


def load_classifier(run=None, root=runs.DEFAULT_ROOT):
    """``(model, run)`` of a classification run (Grad-CAM needs the Keras model).

    ``run`` may be a run directory, or its ``model.keras`` / ``last.keras``.
    """
    if run is not None and Path(run).suffix.lower() in (".tflite", ".onnx"):
        raise KcvError(f"{run}: Grad-CAM needs gradients, which a {Path(run).suffix} file has not; "
                       "pass the run directory instead")
    best = True
    if run is not None and Path(run).suffix.lower() == ".keras":  # RUN/model.keras or RUN/last.keras
        if not runs.is_run_dir(Path(run).parent):
            raise KcvError(f"{run}: not inside a run directory (its {CONFIG_FILE} names the classes)")
        found, best = runs.Run(Path(run).parent), Path(run).name != LAST_FILE
    else:
        found = runs.open_run(run, root)
    model = found.model(best)
    if found.config.get("task") != "classification":
        raise KcvError(f"{found.path}: a {found.config.get('task')} run; Grad-CAM explains classifiers")
    return model, found


def explain_images(run, images: list, out=None, class_name: str | None = None, layer: str | None = None,
                   root=runs.DEFAULT_ROOT, alpha: float = 0.45) -> Iterator[dict]:
    """Yield one record per image after writing its Grad-CAM overlay (Selvaraju et al. 2017).

    Args:
        run: run directory (``None`` = the newest under ``root``).
        images: image files.
        out: folder for the overlays (default ``gradcam/``).
        class_name: explain this class instead of each image's prediction.
        layer: explain this layer's output instead of the last convolutional feature map.
        alpha: opacity of the heat map over the image.

    All arguments are checked (run, class, layer) before the first file is written.
    """
    from kcv.runtime.predict import load_image
    from kcv.viz.gradcam import GradCam, overlay_heatmap

    if not 0.0 <= alpha <= 1.0:
        raise KcvError(f"--alpha {alpha}: must be between 0 and 1")
    model, found = load_classifier(run, root)
    names = found.class_names
    target = class_index(names, class_name)
    cam = GradCam(model, layer)
    out = runs.ensure_dir(out or DEFAULT_OUT, "--out")
    stems: dict[str, int] = {}
    for path in map(Path, images):
        x, original = load_image(path, found.img_size)
        heat, classes, probs = cam(x[None], target)
        explained, predicted = int(classes[0]), int(np.argmax(probs[0]))
        stem = path.stem if path.stem not in stems else f"{path.stem}-{stems[path.stem]}"
        stems[path.stem] = stems.get(path.stem, 1) + 1
        dest = out / f"{stem}_gradcam.png"
        with runs.atomic_path(dest) as tmp:
            Image.fromarray(overlay_heatmap(original, heat[0], alpha)).save(tmp, format="PNG")
        yield {"file": str(path), "class": names[explained], "prob": round(float(probs[0, explained]), 4),
               "predicted": names[predicted], "layer": cam.layer,
               "map": f"{cam.map_shape[0]}x{cam.map_shape[1]}", "overlay": str(dest)}
