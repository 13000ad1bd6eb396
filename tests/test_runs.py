"""Atomic writes: a process killed in the middle of a write leaves the old file whole."""

import json
import subprocess
import sys
import textwrap

import pytest

from kcv import runs
from kcv.errors import KcvError


def test_failed_write_keeps_previous_file_and_no_temp(tmp_path):
    target = tmp_path / "metrics.json"
    runs.write_json(target, {"ok": 1})
    with pytest.raises(RuntimeError):
        with runs.atomic_path(target) as tmp:
            tmp.write_text('{"half')
            raise RuntimeError("boom")
    assert json.loads(target.read_text()) == {"ok": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


KILL_SCRIPT = textwrap.dedent("""
    import os, signal, sys
    import kcv
    from kcv import runs
    target = sys.argv[1]
    model = kcv.create_model("unet", 3, (32, 32, 3), base_filters=2, depth=1)
    runs.save_model(model, target)                      # a good file
    runs.write_json(target + ".json", {"good": True})
    real_save = model.save
    def dying_save(path, *a, **k):                      # write half a file, then get killed
        real_save(path, *a, **k)
        with open(path, "r+b") as f:
            f.truncate(100)
        os.kill(os.getpid(), signal.SIGKILL)
    model.save = dying_save
    import json as _json
    real_dumps = _json.dumps
    if sys.argv[2] == "json":
        def dying_write(self, text, *a, **k):
            open(self, "w").write(text[:5])
            os.kill(os.getpid(), signal.SIGKILL)
        import pathlib
        pathlib.Path.write_text = dying_write
        runs.write_json(target + ".json", {"good": False})
    else:
        runs.save_model(model, target)
""")


@pytest.mark.parametrize("what", ["model", "json"])
def test_sigkill_mid_write_leaves_previous_good_file(tmp_path, what):
    target = tmp_path / "model.keras"
    proc = subprocess.run([sys.executable, "-c", KILL_SCRIPT, str(target), what],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == -9, proc.stderr
    import keras

    import kcv  # noqa: F401

    keras.saving.load_model(target)  # still the whole first file
    assert json.loads((tmp_path / "model.keras.json").read_text()) == {"good": True}


def test_new_run_dir_never_reuses_a_name(tmp_path):
    assert runs.new_run_dir(tmp_path, "unet").name == "unet"
    assert runs.new_run_dir(tmp_path, "unet").name == "unet-2"
    assert runs.new_run_dir(tmp_path, "unet").name == "unet-3"
    with pytest.raises(KcvError, match="--name"):
        runs.new_run_dir(tmp_path, "../evil")


def test_resolve_run_errors(tmp_path):
    with pytest.raises(KcvError, match="no trained run"):
        runs.resolve_run(None, tmp_path)
    (tmp_path / "x").mkdir()
    with pytest.raises(KcvError, match="not a kcv run directory"):
        runs.resolve_run(tmp_path / "x")
