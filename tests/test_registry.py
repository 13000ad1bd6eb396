import pytest

import kcv
from kcv.errors import KcvError
from kcv.registry import get_spec
from tests.conftest import run_cli


def test_list_models_by_task():
    seg = kcv.list_models("segmentation")
    cls = kcv.list_models("classification")
    assert "unet" in seg and "lenet5" in cls
    assert sorted(seg + cls) == kcv.list_models()


def test_unknown_name_lists_close_matches():
    with pytest.raises(KcvError, match="did you mean unet"):
        kcv.create_model("unte", num_classes=3)


def test_unknown_hyperparameter_is_a_user_error():
    with pytest.raises(KcvError, match="base_filter.*base_filters"):
        kcv.create_model("unet", num_classes=3, input_shape=(32, 32, 3), base_filter=8)


def test_hyperparameters_come_from_the_builder_signature():
    assert get_spec("unet").hyperparameters == {"base_filters": 64, "depth": None, "upsampling": "transpose",
                                                "backbone": None, "backbone_args": None}


def test_unknown_arch_on_the_cli_is_one_line_and_exit_2(capsys):
    code, out, err = run_cli(["train", "--arch", "unte"], capsys)
    assert code == 2
    assert err.strip().count("\n") == 0
    assert err.startswith("error: unknown architecture 'unte'; did you mean unet")


def test_models_command_lists_every_architecture(capsys):
    code, out, _ = run_cli(["models", "--task", "segmentation"], capsys)
    assert code == 0
    assert "unet" in out and "GFLOPs@224" in out


@pytest.mark.parametrize("cmd", [[], ["models"], ["train"], ["export"]])
def test_every_command_has_help(cmd, capsys):
    code, out, _ = run_cli(cmd + ["--help"], capsys)
    assert code == 0 and "Usage:" in out


def test_version(capsys):
    code, out, _ = run_cli(["--version"], capsys)
    assert code == 0 and kcv.__version__ in out
