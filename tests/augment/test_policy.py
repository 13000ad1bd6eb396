"""Policy strings and YAML files: parsed, canonical, and rejected with one line naming the token."""

import pytest

from kcv.augment import Op, default_policy, parse_policy
from kcv.errors import KcvError
from tests.conftest import run_cli


def test_policy_string_round_trips_through_its_canonical_form():
    p = parse_policy("flip,rotate=15,crop=0.8,brightness=0.2,shear=0.1,cutmix,randaugment=2x9")
    assert [op.name for op in p.ops] == ["flip", "rotate", "crop", "brightness", "shear", "cutmix", "randaugment"]
    assert p.ops[1] == Op("rotate", 15.0) and p.ops[-1] == Op("randaugment", (2, 9))
    assert parse_policy(str(p)) == p and p.mixing
    assert str(parse_policy("none")) == "none" and not parse_policy("none")
    assert str(parse_policy("rotate90, flip=v")) == "rotate90,flip=v"
    assert str(parse_policy("flip=h,rotate=15,randaugment,cutmix=0.5")) == "flip,rotate=15,randaugment=2x9,cutmix=0.5"
    for task in ("classification", "segmentation"):
        assert parse_policy(default_policy(task), task)


def test_yaml_policy_files(tmp_path):
    f = tmp_path / "aug.yaml"
    f.write_text("augment:\n  - flip\n  - rotate: 10\n  - randaugment: 2x5\n")
    assert str(parse_policy(str(f))) == "flip,rotate=10,randaugment=2x5"
    g = tmp_path / "aug2.yml"
    g.write_text("flip: hv\ncrop: 0.7\nmixup:\n")
    assert str(parse_policy(str(g), "classification")) == "flip=hv,crop=0.7,mixup=0.2"


@pytest.mark.parametrize("spec,needle", [
    ("flip,rotte=15", "'rotte=15': unknown augmentation 'rotte'"),
    ("rotate=abc", "'rotate=abc': bad value"),
    ("rotate=500", "'rotate=500': bad value"),
    ("crop=1.5", "'crop=1.5'"),
    ("randaugment=2x99", "'randaugment=2x99'"),
    ("rotate90=2", "rotate90 takes no value"),
    ("flip,flip=v", "flip appears twice"),
    ("missing.yaml", "missing.yaml: file not found"),
])
def test_bad_policies_name_the_token(spec, needle):
    with pytest.raises(KcvError) as e:
        parse_policy(spec)
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_mixup_is_refused_for_segmentation():
    with pytest.raises(KcvError, match="classification only"):
        parse_policy("flip,mixup", "segmentation")


def test_cli_bad_policy_is_one_line_and_writes_nothing(tmp_path, capsys):
    code, _, err = run_cli(["train", "--arch", "unet", "--augment", "flip,zoomz=2", "--out", str(tmp_path)], capsys)
    assert code == 2 and err.count("\n") == 1 and "'zoomz=2'" in err, err
    assert not any(tmp_path.iterdir()), "no run directory for a rejected policy"


def test_augment_preview_writes_a_grid(tmp_path, capsys):
    out = tmp_path / "grid.png"
    code, stdout, err = run_cli(["augment-preview", "--augment", "flip,rotate=30,cutmix", "--img-size", "32",
                                 "--samples", "3", "--out", str(out)], capsys)
    assert code == 0, err
    assert out.stat().st_size > 1000 and str(out) in stdout
    code, _, _ = run_cli(["augment-preview", "--task", "classification", "--augment", "mixup", "--img-size", "32",
                          "--samples", "2", "--out", str(tmp_path / "c.png")], capsys)
    assert code == 0 and (tmp_path / "c.png").is_file()
    code, _, err = run_cli(["augment-preview", "--augment", "bogus", "--out", str(tmp_path / "x.png")], capsys)
    assert code == 2 and "bogus" in err and not (tmp_path / "x.png").exists()
