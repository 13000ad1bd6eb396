"""``kcv predict`` brings segmentation masks back to the image's size with nearest neighbour."""

import numpy as np
from PIL import Image

import kcv
from kcv.runtime.predict import open_predictor, predict_images


def test_predicted_mask_is_upsampled_with_nearest_neighbour(tmp_path):
    model = kcv.create_model("unet", 4, (16, 16, 3), base_filters=2, depth=1)
    model.save(tmp_path / "seg.keras")
    Image.fromarray(np.full((37, 50, 3), 128, np.uint8)).save(tmp_path / "img.png")

    def stripes(image, probs):
        """Columns alternating between classes 0 and 3 at the model's 16×16 resolution."""
        out = np.zeros_like(probs)
        out[:, 0::2, 0] = 1
        out[:, 1::2, 3] = 1
        return out

    predictor = open_predictor(tmp_path / "seg.keras")
    (result,) = predict_images(predictor, [tmp_path / "img.png"], out=tmp_path / "o", postprocess=stripes)
    mask = np.asarray(Image.open(result.record["mask"]))
    assert mask.shape == (37, 50)  # the image's own size
    assert set(np.unique(mask)) == {0, 3}  # bilinear would have put 1s and 2s between stripes
    assert Image.open(result.record["overlay"]).size == (50, 37)
