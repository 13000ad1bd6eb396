"""Receptive fields and MACs against hand-computed values; ``kcv info`` and ``kcv models``."""

from __future__ import annotations

import json

import keras
import pytest
from keras import layers

import kcv
from kcv.layers import DeformableConv2D
from kcv.models import analysis, catalog
from tests.conftest import run_cli


def _stack(*specs, size=64, channels=4):
    """A chain of ``("conv", k, s[, d])`` / ``("pool", p[, s])`` / ``("dcn", k, s)`` layers."""
    inp = keras.Input((size, size, 3))
    x = inp
    for spec in specs:
        kind = spec[0]
        if kind == "conv":
            d = spec[3] if len(spec) > 3 else 1
            x = layers.Conv2D(channels, spec[1], strides=spec[2], dilation_rate=d, padding="same")(x)
        elif kind == "pool":
            x = layers.MaxPooling2D(spec[1], strides=spec[2] if len(spec) > 2 else None, padding="same")(x)
        elif kind == "dcn":
            x = DeformableConv2D(channels, spec[1], strides=spec[2])(x)
        elif kind == "up":
            x = layers.UpSampling2D(spec[1], interpolation=spec[2])(x)
    return keras.Model(inp, x)


def rf_of(model):
    rf, _ = analysis.receptive_field(model)
    assert rf.size[0] == rf.size[1]
    return rf.size[0], rf.jump[0]


@pytest.mark.parametrize("k,p", [(3, 2), (5, 2), (3, 3), (7, 4), (1, 2)])
def test_conv_then_pool_sees_p_plus_k_minus_1(k, p):
    assert rf_of(_stack(("conv", k, 1), ("pool", p))) == (p + k - 1, p)


def test_vgg_like_stacks():
    block = (("conv", 3, 1), ("conv", 3, 1), ("pool", 2))
    # 3 → 5 → 6 (jump 2) → 10 → 14 → 16 (jump 4)
    assert rf_of(_stack(*block, *block)) == (16, 4)
    # VGG-16: conv5_3 sees 196 px, pool5 212 px (Araujo et al. 2019, Table 1)
    vgg16 = [*block, *block] + [("conv", 3, 1)] * 3 + [("pool", 2)] + ([("conv", 3, 1)] * 3 + [("pool", 2)]) * 2
    assert rf_of(_stack(*vgg16[:-1], size=224, channels=1)) == (196, 16)
    assert rf_of(_stack(*vgg16, size=224, channels=1)) == (212, 32)


def test_stride_dilation_deformable_and_upsampling():
    assert rf_of(_stack(("conv", 3, 1, 2))) == (5, 1)              # k_eff = d(k-1)+1
    assert rf_of(_stack(("conv", 3, 2), ("conv", 3, 1))) == (7, 2)  # 3 + 2·2
    assert rf_of(_stack(("dcn", 3, 2), ("dcn", 3, 1))) == (7, 2)    # counts as its kernel
    assert rf_of(_stack(("conv", 3, 2), ("up", 2, "nearest"))) == (3, 1)
    assert rf_of(_stack(("conv", 3, 2), ("up", 2, "bilinear"))) == (5, 1)  # mixes 2 neighbours


def test_residual_branches_take_the_widest_path():
    inp = keras.Input((32, 32, 3))
    a = layers.Conv2D(4, 3, padding="same")(inp)
    b = layers.Conv2D(4, 7, padding="same")(inp)
    m = keras.Model(inp, layers.Add()([a, layers.Conv2D(4, 1)(b)]))
    assert rf_of(m) == (7, 1)


def test_resnet_receptive_fields_by_hand():
    # stem: 7×7/2 conv → 7 px, jump 2; 3×3/2 pool → 7 + 2·2 = 11, jump 4
    model = kcv.create_model("resnet18", 10, (224, 224, 3))
    fields = analysis.propagate_rf(model)
    rf = {name: fields[id(model.get_layer(name).output)].size[0]
          for name in ("resnet18_stem_conv", "resnet18_stem_pool", "resnet18_stage2_block2_out",
                       "resnet18_stage3_block2_out", "resnet18_stage5_block2_out")}
    # each 3×3 adds 2·jump: conv2_x 4 convs at jump 4 → 43; conv3_x 8·4/2 + 3·16 → 99; ... → 435
    assert rf == {"resnet18_stem_conv": 7, "resnet18_stem_pool": 11, "resnet18_stage2_block2_out": 43,
                  "resnet18_stage3_block2_out": 99, "resnet18_stage5_block2_out": 435}
    # ResNet-50 v1.5 (one 3×3 per bottleneck): 11 + 3·8 + (8+3·16) + (16+5·32) + (32+2·64) = 427
    r50 = kcv.create_model("resnet50", 10, (224, 224, 3), output_stride=16)
    rf, name = analysis.receptive_field(r50)
    assert (rf.size[0], rf.jump[0], name) == (427, 16, "resnet50_stage5_block3_out")  # atrous: same RF


def test_macs_by_hand():
    inp = keras.Input((8, 8, 3))
    x = layers.Conv2D(5, 3, padding="same", name="c")(inp)                  # 8·8·5·9·3
    x = layers.DepthwiseConv2D(3, strides=2, padding="same", name="dw")(x)  # 4·4·5·9
    x = DeformableConv2D(6, 3, name="dcn")(x)                               # 4·4·9·5·(6 + 27 + 5)
    x = layers.Dense(7, name="fc")(layers.GlobalAveragePooling2D()(x))      # 6·7
    model = keras.Model(inp, x)
    want = {"c": 8640, "dw": 720, "dcn": 27360, "fc": 42}
    assert {n: analysis.layer_macs(model.get_layer(n)) for n in want} == want
    assert analysis.count_macs(model) == sum(want.values())


def test_info_command_prints_table_totals_and_receptive_field(capsys):
    code, out, err = run_cli(["info", "resnet18", "--img-size", "64"], capsys)
    assert code == 0, err
    assert "resnet18_stage5_block2_out" in out and "Conv2D" in out and "(2, 2, 512)" in out
    assert "params          11,699,112 (11,689,512 trainable" in out
    assert "receptive field 435×435 px at stride 32" in out


def test_info_command_reports_global_context_for_se(capsys):
    code, out, _ = run_cli(["info", "se_resnet50", "--img-size", "64", "--no-layers"], capsys)
    assert code == 0 and "427×427 px" in out and "global context" in out


@pytest.mark.parametrize("argv,msg", [(["info", "resnet18", "--img-size", "8"], "--img-size 8"),
                                      (["info", "resnet81"], "unknown architecture 'resnet81'"),
                                      (["info", "resnet18", "--model-arg", "output_stride=3"],
                                       "output_stride 3")])
def test_info_command_user_errors(argv, msg, capsys):
    code, out, err = run_cli(argv, capsys)
    assert code == 2 and err.startswith("error: ") and msg in err and err.count("\n") == 1


def test_models_rows_are_cached_atomically(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("KCV_CACHE_DIR", str(tmp_path))
    row = catalog.model_row("resnet18")
    assert (row["params"], row["trainable"]) == (11_699_112, 11_689_512)
    files = list(tmp_path.rglob("*.json"))
    assert [f.name for f in files] == ["resnet18.json"] and kcv.__version__ in files[0].parent.name
    assert not list(tmp_path.rglob(".*tmp*"))  # no temporary left behind
    json.dump({**row, "macs": 1}, files[0].open("w"))  # a cached row is served without building
    assert catalog.model_row("resnet18")["macs"] == 1
    code, out, err = run_cli(["models", "resnet18", "resnet50", "--markdown"], capsys)
    assert code == 0 and "building resnet50" in err and "building resnet18" not in err
    assert "| `resnet50` | classification | 25,557,032 | 4.09 | 25,557,032 | 4.09 | +0.00 % |" in out
    assert out.index("`resnet18`") < out.index("`resnet50`")


def test_models_unknown_name_is_a_user_error(capsys):
    code, _, err = run_cli(["models", "resnet81"], capsys)
    assert code == 2 and "unknown architecture 'resnet81'" in err


@pytest.mark.parametrize("cmd", ["info", "models"])
def test_help(cmd, capsys):
    code, out, _ = run_cli([cmd, "--help"], capsys)
    assert code == 0 and "Usage:" in out
    assert ("--img-size" if cmd == "info" else "--markdown") in out
