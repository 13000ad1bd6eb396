"""Atomic writes: a process killed in the middle of a write leaves the old file whole.
The Run object: one reader of a run directory."""

import json
import os
import subprocess
import sys
import textwrap
import time

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


def test_run_object_reads_a_run_once(unet_run, tmp_path):
    import kcv

    run = runs.open_run(unet_run)
    assert run.path == unet_run and isinstance(run, kcv.Run)
    assert (run.task, run.img_size, run.arch) == ("segmentation", 32, "unet")
    assert run.num_classes == len(run.class_names) == 4
    assert run.metrics["val_miou"] >= 0 and run.exports == unet_run / "exports"
    assert isinstance(run.report, dict)
    source = run.data_source()
    assert run.data_source() is source and source.num_classes == 4 and source.img_size == 32
    assert run.model().output_shape[-1] == 4
    model, config = kcv.load_run(unet_run)  # the public API, through the same object
    assert config == run.config and model.output_shape == run.model().output_shape
    # config.json is read once: a later change on disk does not reach this Run
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in ("config.json", "model.keras"):
        (copy / name).write_bytes((unet_run / name).read_bytes())
    other = runs.Run(copy)
    assert other.config["num_classes"] == 4
    runs.write_json(copy / "config.json", {**other.config, "num_classes": 5})
    assert other.config["num_classes"] == 4


def test_run_object_errors_name_the_path(unet_run, tmp_path):
    with pytest.raises(KcvError, match="not a kcv run directory"):
        runs.Run(tmp_path)
    fake = tmp_path / "fake"
    fake.mkdir()
    runs.write_json(fake / "config.json", {**runs.load_config(unet_run), "num_classes": 5})
    (fake / "model.keras").write_bytes(b"not a zip")
    run = runs.Run(fake)
    with pytest.raises(KcvError, match=f"{fake}: no metrics.json"):
        _ = run.metrics
    with pytest.raises(KcvError, match="model.keras: cannot load model"):
        run.model()
    with pytest.raises(KcvError, match=r"--data shapes:48: 4 classes .* trained on 5"):
        run.data_source()


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_name_left_untrained_by_a_dead_writer_is_taken_over(tmp_path):
    """Issue 17 item 14 (kill -9 before the first epoch; the real kill is tests/fuzz/test_items.py)."""
    def left(name, pid=None, extra=(), age=0):
        d = tmp_path / name
        d.mkdir()
        runs.write_json(d / "config.json", {"arch": "lenet5"})
        if pid is not None:
            (d / f".writer.tmp-{pid}-").touch()
        for f in extra:
            (d / f).write_text("x")
        if age:
            os.utime(d, (time.time() - age, time.time() - age))
        return d

    left("dead", pid=_dead_pid())
    left("alive", pid=os.getppid())  # a concurrent run still writing it
    left("legacy", age=runs.LEGACY_GRACE_S + 60)  # made before writer marks
    left("recent")  # no mark, just made: perhaps a live writer between mkdir and its mark
    left("users", age=runs.LEGACY_GRACE_S + 60, extra=["notes.txt"])  # not only what a run writes
    trained = left("trained", pid=_dead_pid(), extra=["last.keras"])
    assert [runs.abandoned(tmp_path / n) for n in ("dead", "alive", "legacy", "recent", "users", "trained")] \
        == [True, False, True, False, False, False]
    for name, got in [("dead", "dead"), ("alive", "alive-2"), ("legacy", "legacy"), ("recent", "recent-2"),
                      ("users", "users-2"), ("trained", "trained-2")]:
        made = runs.new_run_dir(tmp_path, name)
        assert made.name == got and not (made / "config.json").exists()
        assert [p.name for p in made.iterdir()] == [f".writer.tmp-{os.getpid()}-"]
    assert (trained / "last.keras").is_file() and not any(p.name.endswith("abandoned") for p in tmp_path.iterdir())
    with runs.NewRunGuard():
        done = runs.new_run_dir(tmp_path, "x")
    assert not any(done.iterdir())  # the mark goes when its run ends


def test_resolving_a_run_that_trained_nothing_says_so(tmp_path):
    d = tmp_path / "killed"
    d.mkdir()
    runs.write_json(d / "config.json", {"arch": "lenet5"})
    with pytest.raises(KcvError, match="nothing was trained in this run"):
        runs.resolve_run(d)
    with pytest.raises(KcvError, match="no trained run under"):
        runs.latest_run(tmp_path)
