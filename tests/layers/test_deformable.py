"""DCNv2 layer: numerics against an ordinary conv and a NumPy reference, gradients, serialisation,
TFLite built-in ops only, and ``resnet50_dcn`` trained one epoch and exported."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from kcv.layers import DeformableConv2D

K = 3


def _layer_and_conv(x, **kw):
    dcn = DeformableConv2D(4, K, **kw)
    dcn(x)
    conv = keras.layers.Conv2D(4, K, **kw)
    conv(x)
    conv.set_weights([w.numpy() for w in (dcn.kernel, dcn.bias) if w is not None])
    return dcn, conv


def _set_offset_bias(dcn, offsets=0.0, mask_logit=0.0):
    """Constant offsets ``(dy, dx)`` for every tap and a constant mask logit (zero kernel)."""
    kernel, bias = dcn.offset.get_weights()
    bias = np.zeros_like(bias)
    bias[:2 * K * K] = np.tile(np.asarray(offsets, "float32") * np.ones(2, "float32"), K * K)
    bias[2 * K * K:] = mask_logit
    dcn.offset.set_weights([np.zeros_like(kernel), bias])


@pytest.mark.parametrize("kw", [dict(padding="same"), dict(padding="same", strides=2),
                                dict(padding="same", dilation_rate=2), dict(padding="valid", strides=2)])
def test_zero_offsets_and_unit_masks_equal_an_ordinary_conv(kw, rng):
    x = rng.normal(size=(2, 9, 10, 3)).astype("float32")
    dcn, conv = _layer_and_conv(x, **kw)
    _set_offset_bias(dcn, 0.0, mask_logit=40.0)  # sigmoid(40) == 1 in float32
    np.testing.assert_allclose(dcn(x), conv(x), atol=1e-5)


def test_fresh_layer_is_half_a_conv(rng):
    # DCNv2 initialisation: offsets 0, masks sigmoid(0) = 0.5
    x = rng.normal(size=(1, 8, 8, 3)).astype("float32")
    dcn, conv = _layer_and_conv(x, padding="same", use_bias=False)
    np.testing.assert_allclose(dcn(x), 0.5 * conv(x), atol=1e-5)


def _numpy_deform_conv(x, kernel, offsets, masks, stride=1, pad=1):
    """Loop reference: bilinear sampling with zeros outside, as torchvision ``deform_conv2d``."""
    b, h, w, c = x.shape
    ho, wo = offsets.shape[1:3]

    def pixel(n, yy, xx):
        return x[n, yy, xx] if 0 <= yy < h and 0 <= xx < w else np.zeros(c, x.dtype)

    out = np.zeros((b, ho, wo, kernel.shape[-1]), np.float64)
    for n in range(b):
        for i in range(ho):
            for j in range(wo):
                for k in range(K * K):
                    ky, kx = divmod(k, K)
                    py = i * stride - pad + ky + offsets[n, i, j, 2 * k]
                    px = j * stride - pad + kx + offsets[n, i, j, 2 * k + 1]
                    y0, x0 = int(np.floor(py)), int(np.floor(px))
                    ly, lx = py - y0, px - x0
                    v = ((1 - ly) * (1 - lx) * pixel(n, y0, x0) + (1 - ly) * lx * pixel(n, y0, x0 + 1)
                         + ly * (1 - lx) * pixel(n, y0 + 1, x0) + ly * lx * pixel(n, y0 + 1, x0 + 1))
                    out[n, i, j] += masks[n, i, j, k] * v @ kernel[ky, kx]
    return out


def test_fractional_offsets_match_a_numpy_reference(rng):
    x = rng.normal(size=(2, 6, 7, 2)).astype("float32")
    dcn = DeformableConv2D(3, K, use_bias=False)
    dcn(x)
    k_off, b_off = dcn.offset.get_weights()
    dcn.offset.set_weights([rng.normal(0, 0.8, k_off.shape).astype("float32"),
                            rng.normal(0, 1.5, b_off.shape).astype("float32")])  # some land outside
    om = np.asarray(dcn.offset(x))
    masks = 1 / (1 + np.exp(-om[..., 2 * K * K:]))
    want = _numpy_deform_conv(x, dcn.kernel.numpy(), om[..., :2 * K * K], masks)
    np.testing.assert_allclose(dcn(x), want, atol=1e-4)


def test_offsets_receive_nonzero_gradients(rng):
    x = tf.constant(rng.normal(size=(2, 8, 8, 3)).astype("float32"))
    dcn = DeformableConv2D(4, K, strides=2)
    dcn(x)  # freshly initialised: offsets exactly 0, masks 0.5
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(dcn(x) ** 2)
    g_kernel, g_bias = tape.gradient(loss, [dcn.offset.kernel.value, dcn.offset.bias.value])
    g_offsets = np.abs(g_kernel.numpy()[..., :2 * K * K]).max(), np.abs(g_bias.numpy()[:2 * K * K]).max()
    g_masks = np.abs(g_kernel.numpy()[..., 2 * K * K:]).max()
    assert min(g_offsets) > 1e-4 and g_masks > 1e-4


def test_serialises_and_accepts_any_input_size(tmp_path, rng):
    inp = keras.Input((None, None, 3))
    out = DeformableConv2D(5, 3, strides=2, dilation_rate=1, use_bias=False, name="dcn")(inp)
    model = keras.Model(inp, out)
    cfg = model.get_layer("dcn").get_config()
    assert json.loads(json.dumps(cfg))["filters"] == 5 and cfg["strides"] == (2, 2)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    for shape in ((1, 9, 12, 3), (2, 16, 16, 3)):
        x = rng.normal(size=shape).astype("float32")
        got = loaded(x)
        assert got.shape == (shape[0], -(-shape[1] // 2), -(-shape[2] // 2), 5)
        np.testing.assert_allclose(got, model(x), atol=1e-6)


def test_resnet50_dcn_encoder_takes_any_input_size_and_output_stride(rng):
    from kcv.models.backbone import build_encoder

    enc = build_encoder("resnet50_dcn", (None, None, 3), strides=(4, 16, 32), output_stride=16)
    feats = enc(rng.uniform(0, 255, (1, 40, 72, 3)).astype("float32"))
    assert [tuple(f.shape) for f in feats] == [(1, 10, 18, 256), (1, 3, 5, 1024), (1, 3, 5, 2048)]


def tflite_ops(path) -> set[str]:
    from ai_edge_litert.interpreter import Interpreter

    return {op["op_name"] for op in Interpreter(model_path=str(path))._get_ops_details()}


def assert_builtin_only(ops):
    # Flex (SELECT_TF_OPS) kernels show up as "Flex..." custom ops, anything else custom as CUSTOM
    assert not [o for o in ops if o.upper().startswith("FLEX") or o.upper() in ("CUSTOM", "DELEGATE")], ops


def test_tflite_uses_builtin_ops_only_and_matches(tmp_path, rng):
    from kcv.export.tflite import convert_fp32
    from kcv.runtime.runners import LiteRTRunner

    inp = keras.Input((12, 12, 3))
    x = DeformableConv2D(6, 3, strides=2, name="dcn")(inp)
    model = keras.Model(inp, keras.layers.GlobalAveragePooling2D()(x))
    k_off, b_off = model.get_layer("dcn").offset.get_weights()
    model.get_layer("dcn").offset.set_weights([rng.normal(0, 0.2, k_off.shape).astype("float32"), b_off])
    convert_fp32(model, tmp_path / "dcn.tflite")
    ops = tflite_ops(tmp_path / "dcn.tflite")
    assert_builtin_only(ops)
    assert "GATHER" in ops and "GATHER_ND" not in ops
    x = rng.uniform(0, 1, (2, 12, 12, 3)).astype("float32")
    np.testing.assert_allclose(LiteRTRunner(tmp_path / "dcn.tflite")(x), model(x), atol=1e-5)


@pytest.mark.slow
def test_resnet50_dcn_trains_one_epoch_on_shapes_and_exports(tmp_path):
    from kcv.export.formats import export_run
    from kcv.train import TrainConfig, train

    run = train(TrainConfig(arch="resnet50_dcn", data="shapes:8", epochs=1, img_size=32,
                            batch_size=8, out=str(tmp_path), verbose=0))
    metrics = json.loads((run / "metrics.json").read_text())
    assert np.isfinite(metrics["val_loss"]) and "val_top5_accuracy" in metrics
    result = export_run(run, formats=("tflite",), samples=4, log=lambda *_: None)
    assert result.ok, result.report
    ops = tflite_ops(run / "exports" / "model_fp32.tflite")
    assert_builtin_only(ops)
    assert "GATHER" in ops
