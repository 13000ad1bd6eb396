import json
import shutil

import numpy as np

from kcv.runtime.runners import LiteRTRunner
from tests.conftest import run_cli


def test_export_tflite_verifies_and_reports(unet_run, capsys):
    code, out, err = run_cli(["export", str(unet_run), "--tflite"], capsys)
    assert code == 0, err
    f = unet_run / "exports" / "model_fp32.tflite"
    assert f.is_file()
    report = json.loads((unet_run / "exports" / "report.json").read_text())
    entry = report["formats"]["tflite"]
    assert entry["status"] == "ok" and entry["max_abs_diff"] <= 1e-4 and entry["agreement"] > 0.999
    assert "max|Δprob|" in out and "model_fp32.tflite" in out
    # the file runs in LiteRT directly, returns probabilities at input resolution
    probs = LiteRTRunner(f)(np.zeros((1, 32, 32, 3), "float32"))
    assert probs.shape == (1, 32, 32, 4)
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)


def test_export_newest_run_by_default(unet_run, capsys, monkeypatch):
    monkeypatch.chdir(unet_run.parent.parent)
    (unet_run.parent.parent / "saved_models").mkdir(exist_ok=True)
    copy = unet_run.parent.parent / "saved_models" / "unet"
    if not copy.exists():
        shutil.copytree(unet_run, copy, ignore=shutil.ignore_patterns("exports"))
    code, out, err = run_cli(["export"], capsys)
    assert code == 0, err
    assert (copy / "exports" / "model_fp32.tflite").is_file()


def test_export_errors_are_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(["export"], capsys)
    assert code == 2 and "no trained run" in err and err.count("\n") == 1
    run = tmp_path / "broken"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"arch": "unet", "task": "segmentation", "img_size": 32,
                                               "class_names": ["background", "circle", "square", "triangle"]}))
    (run / "model.keras").write_bytes(b"garbage")
    code, _, err = run_cli(["export", str(run)], capsys)
    assert code == 2 and "model.keras" in err and err.count("\n") == 1
    assert not (run / "exports").exists() or not any((run / "exports").iterdir())
