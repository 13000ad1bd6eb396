"""MultiWorkerMirroredStrategy: two worker processes on 127.0.0.1 train one model on CPU."""

import csv
import json
import os
import socket
import subprocess
import sys

import pytest


def free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


@pytest.mark.slow
def test_two_workers_train_one_model_and_only_the_chief_writes(tmp_path):
    ports = free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    argv = [sys.executable, "-m", "kcv", "train", "--arch", "unet", "--data", "shapes:32", "--img-size", "32",
            "--epochs", "2", "--batch-size", "8", "--model-arg", "base_filters=4", "--model-arg", "depth=2",
            "--distribute", "multiworker", "--out", str(tmp_path), "--name", "mw", "--quiet"]
    procs = []
    for i in range(2):
        env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "3",
               "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})}
        procs.append(subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outs = []
    try:
        for p in procs:
            # ~30 s idle; 900 s because CI shares its 2 cores with a second xdist worker
            outs.append(p.communicate(timeout=900))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    assert "saved" in outs[0][0] and "worker done" in outs[1][0]
    assert sorted(d.name for d in tmp_path.iterdir()) == ["mw"], "only the chief writes a run directory"
    run = tmp_path / "mw"
    assert [r["epoch"] for r in csv.DictReader((run / "history.csv").open())] == ["1", "2"]
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["replicas"] == 2 and cfg["distribute"] == "multiworker"
    assert json.loads((run / "metrics.json").read_text())["val_miou"] > 0
