"""Self-training ablation on top of ``learn_study.py`` (issue 18): the students' budget and
``--min-keep``, from the very same round-0 teachers.

``learn_study.py`` gives its students 0.6 of the teacher's epochs and kcv's ``--min-keep``
0.5; in its first seed the student beat the teacher in one regime of four. This script
re-runs only the students, for each study cell (regime, seed) whose self-training run is in
``WORK/runs``, with ``kcv self-train --teacher <that round 0>`` (the teacher is re-scored,
not re-trained, so every variant starts from the same model) over the variants
``--variants``: ``share`` = students' epochs / teacher's epochs (kcv's default is 1: the
teacher's ``--epochs`` over the student's larger set), ``min_keep`` = ``--min-keep``.

    python benchmarks/self_train_ablation.py --work WORK [--variants 1.0:0.5,1.0:0.2]

Writes ``WORK/ablation.json`` and prints a table (Markdown) per variant: teacher, result,
chosen round, pseudo-labels kept and their accuracy.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import data_efficient as de  # noqa: E402
import learn_study as study  # noqa: E402  (the command line, the regimes' order)

from kcv import metrics, runs  # noqa: E402
from kcv.train import TrainConfig  # noqa: E402
from kcv.train.self_training import SelfTrainConfig, self_train  # noqa: E402

BEGIN, END = "<!-- self_train_ablation:begin -->", "<!-- self_train_ablation:end -->"
# the teacher's training options carried over to the students (everything else: defaults)
CARRIED = ("arch", "data", "img_size", "epochs", "batch_size", "lr", "seed", "model_args", "pretrained",
           "backbone_lr_mult")


def cells(work: Path) -> list:
    """``[(regime-seed tag, self-training run dir)]`` of the study's finished self-training runs."""
    found = []
    for run in sorted((work / "runs").glob("*-st-s*")):
        if (run / "config.json").is_file() and (run / "rounds" / "round0" / "model.keras").is_file():
            found.append((run.name.replace("-st-", "-"), run))
    return found


def variant(work: Path, tag: str, study_run: Path, share: float, min_keep: float) -> dict:
    study = runs.load_config(study_run)
    teacher = study_run / "rounds" / "round0"
    cfg = runs.load_config(teacher)
    base = TrainConfig(**{k: cfg[k] for k in CARRIED if cfg.get(k) is not None},
                       out=str(work / "ablation"), name=f"{tag}-share{share:g}-keep{min_keep:g}", verbose=0)
    run = self_train(SelfTrainConfig(base, unlabeled=study["self_training"]["unlabeled"], rounds=2,
                                     teacher=str(teacher), min_keep=min_keep,
                                     student_epochs=max(1, round(cfg["epochs"] * share))))
    st = runs.load_config(run)["self_training"]
    key = metrics.monitor(cfg["task"])
    rows = st["summary"]
    return {"tag": tag, "share": share, "min_keep": min_keep, "teacher": rows[0][key],
            "result": runs.read_json(run / "metrics.json")[key], "chosen_round": st["chosen_round"],
            "rounds": [{"round": r["round"], "score": r[key], "kept": r.get("pseudo_labels_kept"),
                        "pseudo_label_accuracy": r.get("pseudo_label_accuracy"),
                        "train_accuracy": r.get("train_accuracy")} for r in rows]}


def table(results: list) -> str:
    lines = ["| regime-seed | share:min-keep | teacher | round 1 | round 2 | result | Δ | kept r1 (acc) |",
             "|---|---|---:|---:|---:|---:|---:|---|"]
    for r in results:
        by = {x["round"]: x for x in r["rounds"]}
        r1 = by.get(1, {})
        kept = "—" if r1.get("kept") is None else str(r1["kept"])
        if r1.get("pseudo_label_accuracy") is not None:
            kept += f" ({r1['pseudo_label_accuracy']:.2f})"
        scores = [f"{by[k]['score']:.3f}" if k in by else "—" for k in (1, 2)]
        lines.append(f"| {r['tag']} | {r['share']:g}:{r['min_keep']:g} | {r['teacher']:.3f} | {scores[0]} "
                     f"| {scores[1]} | {r['result']:.3f} | {r['result'] - r['teacher']:+.3f} | {kept} |")
    lines += ["", "| share:min-keep | mean Δ over cells | cells where a student won |", "|---|---:|---:|"]
    for key in dict.fromkeys((r["share"], r["min_keep"]) for r in results):
        mine = [r for r in results if (r["share"], r["min_keep"]) == key]
        lines.append(f"| {key[0]:g}:{key[1]:g} | {statistics.mean(r['result'] - r['teacher'] for r in mine):+.3f} "
                     f"| {sum(r['chosen_round'] > 0 for r in mine)} / {len(mine)} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = study.addon_parser(__doc__, "1.0:0.5,1.0:0.2", "share:min_keep,...")
    args = ap.parse_args(argv)
    work = Path(args.work)
    de.register_bench_cnn()
    out = work / "ablation.json"
    results = json.loads(out.read_text()) if out.is_file() else []
    done = {(r["tag"], r["share"], r["min_keep"]) for r in results}
    variants = [tuple(float(x) for x in v.split(":")) for v in args.variants.split(",")]
    for tag, run in ([] if args.table_only else cells(work)):
        if args.only and tag not in args.only.split(","):
            continue
        for share, keep in variants:
            if (tag, share, keep) in done:
                continue
            results.append(variant(work, tag, run, share, keep))
            out.write_text(json.dumps(results, indent=1))
            r = results[-1]
            print(f"{tag} share {share:g} min-keep {keep:g}: teacher {r['teacher']:.3f} -> {r['result']:.3f} "
                  f"(round {r['chosen_round']})", flush=True)
    results.sort(key=order)
    text = table(results)
    print(text)
    if args.write:
        de.write_results(text, BEGIN, END, "Self-training ablation: students' budget and --min-keep (issue 18)")


def order(result: dict) -> tuple:
    """Seed, then the study's regime order, then ``--min-keep`` high to low."""
    regime, seed = result["tag"].rsplit("-s", 1)
    names = list(study.REGIMES)
    return int(seed), names.index(regime) if regime in names else len(names), -result["min_keep"]


if __name__ == "__main__":
    main()
