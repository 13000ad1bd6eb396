import keras
import numpy as np
import pytest

import kcv
from kcv.errors import KcvError


def test_static_100px_output_is_input_sized():
    model = kcv.create_model("unet", num_classes=5, input_shape=(100, 100, 3), base_filters=4)
    assert model.output_shape == (None, 100, 100, 5)
    out = model(np.zeros((1, 100, 100, 3), "float32"))
    assert out.shape == (1, 100, 100, 5)


@pytest.mark.parametrize("upsampling", ["transpose", "bilinear"])
def test_dynamic_input_75x90(upsampling):
    model = kcv.create_model("unet", num_classes=5, input_shape=(None, None, 3), base_filters=4,
                             upsampling=upsampling)
    out = model(np.random.default_rng(0).uniform(0, 255, (2, 75, 90, 3)).astype("float32"))
    assert out.shape == (2, 75, 90, 5)


def test_paper_configuration_parameter_count():
    # 64 base filters, depth 4, 2 classes; BN instead of conv biases. Without BN the
    # classic count is 31,031,685 (bias-ful convs); with BN (2 trainable + 2 running
    # statistics per channel, no conv bias) it is 31,049,474.
    model = kcv.create_model("unet", num_classes=2, input_shape=(572, 572, 3))
    assert model.count_params() == 31_049_474
    assert [l.filters for l in model.layers if l.name.endswith("_1_conv")] == \
        [64, 128, 256, 512, 1024, 512, 256, 128, 64]


def test_pad_then_crop_is_identity_and_centred():
    from kcv.layers import CropToReference, PadToMultiple

    x = np.random.default_rng(0).normal(size=(1, 33, 47, 2)).astype("float32")
    padded = PadToMultiple(8)(x)
    assert padded.shape == (1, 40, 48, 2)
    # 7 rows of padding split 3 above / 4 below; 1 column split 0 left / 1 right
    np.testing.assert_array_equal(np.asarray(padded)[:, 3:36, 0:47], x)
    np.testing.assert_array_equal(CropToReference(8)([padded, x]), x)


def test_bad_upsampling_is_a_user_error():
    with pytest.raises(KcvError, match="upsampling"):
        kcv.create_model("unet", num_classes=3, input_shape=(32, 32, 3), upsampling="nearest")


def test_save_load_round_trip(tmp_path):
    model = kcv.create_model("unet", num_classes=3, input_shape=(None, None, 3), base_filters=4, depth=2)
    x = np.random.default_rng(1).uniform(0, 255, (1, 30, 42, 3)).astype("float32")
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(loaded(x), model(x), atol=1e-5)
