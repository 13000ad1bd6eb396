"""``kcv benchmark``: one row per format (Keras included), table on stdout, merged into
report.json and report.md; ``kcv predict`` then picks the fastest verified runtime."""

import json

from kcv.runtime.predict import choose_runtime
from tests.conftest import run_cli
from tests.export.fixtures import one_error


def test_benchmark_rows_and_reports(cnn_exported, capsys):
    run_dir, _ = cnn_exported
    code, out, err = run_cli(["benchmark", str(run_dir), "--formats", "keras,tflite,int8,onnx",
                              "--runs", "3", "--samples", "12"], capsys)
    assert code == 0, err
    assert "| format | size MB | metric |" in out and "| int8 |" in out
    report = json.loads((run_dir / "exports" / "report.json").read_text())
    assert set(report["formats"]) >= {"tflite", "int8", "onnx"}  # export entries kept (merged)
    bench = report["benchmark"]
    assert [r["format"] for r in bench["rows"]] == ["keras", "tflite", "int8", "onnx"]
    assert bench["threads"] == 2 and bench["runs"] == 3 and bench["samples"] == 12
    for row in bench["rows"]:
        assert row["p50_ms"] > 0 and row["p95_ms"] >= row["p50_ms"] and row["init_ms"] > 0
        assert row["size_mb"] > 0 and row["metric_name"] == "accuracy"
        assert row["peak_mb"] is None or row["peak_mb"] >= 0
    tfl = bench["rows"][1]
    assert abs(tfl["delta_points"]) <= 1e-9 and tfl["max_abs_diff"] <= 1e-4
    md = (run_dir / "exports" / "report.md").read_text()
    assert "## Benchmark" in md and "| keras |" in md and "| model_fp32.tflite |" in md

    # the fastest verified runtime per the benchmark is what a run predicts with by default
    fastest = min((r for r in bench["rows"] if r["format"] in ("keras", "tflite", "onnx", "int8")),
                  key=lambda r: r["p50_ms"])
    path, _ = choose_runtime(run_dir)
    assert str(path).endswith(fastest["file"])


def test_benchmark_errors(cnn_exported, capsys):
    run_dir, _ = cnn_exported
    code, _, err = run_cli(["benchmark", str(run_dir), "--formats", "tflite,bogus"], capsys)
    assert code == 2 and "unknown bogus" in err and one_error(err)
    code, _, err = run_cli(["benchmark", str(run_dir), "--runs", "0"], capsys)
    assert code == 2 and one_error(err)
