"""``kcv compare``: three trained runs give the chart and the markdown table; bad runs are one line."""

from __future__ import annotations

import shutil

import pytest

import kcv
from kcv import runs
from kcv.contracts import CONFIG_FILE
from kcv.models import inference_model
from kcv.models.analysis import count_macs
from kcv.viz import style
from tests.conftest import run_cli
from tests.export.fixtures import cnn_run, one_error  # noqa: F401  (cnn_run: fixture)


@pytest.fixture(scope="module")
def three_runs(cnn_run, tmp_path_factory):
    """The shared test CNN, plus a LeNet-5 (1 epoch) and a raw-pixel k-NN on 32 shapes images."""
    from kcv.train import TrainConfig, train

    root = tmp_path_factory.mktemp("compare_runs")
    lenet = train(TrainConfig(arch="lenet5", data="shapes:32", epochs=1, img_size=32, batch_size=16,
                              out=str(root), verbose=0))
    knn = train(TrainConfig(arch="knn", data="shapes:32", img_size=16, out=str(root), verbose=0))
    return [cnn_run, lenet, knn]


def test_three_runs_give_chart_and_table(three_runs, tmp_path, capsys):
    out = tmp_path / "cmp" / "chart.png"
    code, stdout, err = run_cli(["compare", *map(str, three_runs), "--out", str(out)], capsys)
    assert code == 0, err
    assert out.stat().st_size > 5000 and style.style_of(out) == style.STYLE_VERSION
    table = stdout.split("wrote")[0].strip()
    assert (tmp_path / "cmp" / "chart.md").read_text().strip() == table
    lines = table.splitlines()
    assert lines[0] == "| run | arch | img | val_accuracy | params | GFLOPs |" and len(lines) == 5
    rows = {cells[1]: cells for cells in (line.split(" | ") for line in lines[2:])}
    assert set(rows) == {"kcv_test_cnn", "lenet5", "knn"}
    values = [float(line.split(" | ")[3]) for line in lines[2:]]
    assert values == sorted(values, reverse=True)  # best first
    # parameters and GFLOPs are those of the deployable model at the run's input size
    lenet = inference_model(kcv.create_model("lenet5", 3, (32, 32, 3)))
    assert rows["lenet5"][4] == f"{lenet.count_params():,}"
    assert float(rows["lenet5"][5].rstrip(" |")) == pytest.approx(count_macs(lenet) / 1e9, rel=1e-2)
    assert rows["knn"][2] == "16"  # k-NN: one distance matmul against its 32 references of 16·16·3
    assert float(rows["knn"][5].rstrip(" |")) == pytest.approx(32 * 16 * 16 * 3 / 1e9, rel=1e-2)


def test_segmentation_runs_compare_miou(three_runs, tmp_path, capsys, monkeypatch):
    seg = []
    for i, run in enumerate(three_runs[:2]):
        copy = shutil.copytree(run, tmp_path / f"seg{i}")
        runs.write_json(copy / CONFIG_FILE, {**runs.load_config(copy), "task": "segmentation"})
        runs.write_json(copy / "metrics.json", {"val_miou": 0.5 + 0.1 * i, "val_loss": 1.0})
        seg.append(str(copy))
    monkeypatch.chdir(tmp_path)
    code, stdout, err = run_cli(["compare", *seg], capsys)
    assert code == 0, err
    assert "| val_miou |" in stdout and (tmp_path / "compare.png").is_file() and (tmp_path / "compare.md").is_file()


def test_bad_runs_are_one_line_and_write_nothing(three_runs, tmp_path, capsys):
    unfinished = shutil.copytree(three_runs[1], tmp_path / "unfinished")
    (unfinished / "metrics.json").unlink()
    mixed = shutil.copytree(three_runs[1], tmp_path / "mixed")
    runs.write_json(mixed / CONFIG_FILE, {**runs.load_config(mixed), "task": "segmentation"})
    runs.write_json(mixed / "metrics.json", {"val_miou": 0.4})
    out = tmp_path / "out" / "c.png"
    cases = [([str(tmp_path / "missing")], "no such run directory"),
             ([str(unfinished)], "no metrics.json"),
             ([str(three_runs[1]), str(mixed)], "cannot put accuracy and mIoU on one axis"),
             ([str(three_runs[1]), "--out", str(tmp_path / "out" / "c.jpg")], "name a .png file")]
    for argv, message in cases:
        code, _, err = run_cli(["compare", *argv, "--out", str(out)] if "--out" not in argv else ["compare", *argv],
                               capsys)
        assert code == 2 and one_error(err) and message in err, (argv, err)
    assert not (tmp_path / "out").exists()
