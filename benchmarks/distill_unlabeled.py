"""Distillation with the regime's unlabeled images, on top of ``learn_study.py`` (issue 18).

``learn_study.py`` distils on the labelled images only: the teacher's soft targets then come
from the very images whose labels the student already has, and in its five regimes no
(T, α) helped beyond seed noise. Distillation's gains in the literature come from the
student matching the teacher on *more* inputs than the labelled ones (Hinton et al. 2015
used a transfer set; Beyer et al. 2022, arXiv:2106.05237, "function matching"; Xie et al.
2020's Noisy Student). Every study regime has such images (300, the ones self-training
labels), so this script re-runs only the students, for each study cell (regime, seed) whose
runs are in ``WORK/runs``:

- ``scratch, same steps``: the student without a teacher, its epochs scaled by
  (labelled + unlabeled) / labelled, i.e. the optimiser steps of a distilled run with
  ``--unlabeled`` (so that a gain is not just "more steps");
- ``kcv train --teacher RUN --unlabeled U --temperature T --alpha A`` (each ``--variants``
  ``T:A``) from both of the study's teachers (``wide``: the self-training round-0 model;
  ``long``: the student's architecture trained 3x longer), with ``--baseline`` the study's
  scratch run;
- ``--strong``: a third pair whose teacher knows more than the student's labels (the ``wide``
  architecture trained here on ~10x the labels, :data:`STRONG_LABELS`), distilled on the
  labelled images alone and with ``--unlabeled`` (:data:`STRONG_VARIANTS`); then the table
  that chooses ``--alpha``'s default with ``--unlabeled`` over all three pairs.

Compared with the study's scratch run (same ``--epochs``: kcv's meaning of "the same
budget") and with the same-steps control. The study's teachers and scratch runs are
re-scored, never re-trained.

    python benchmarks/distill_unlabeled.py --work WORK [--variants 4:0.1,4:0.5,4:0.9,1:0.1,1:0.5] [--strong] [--write]

Cost on the 2-core machine: ~45 min for the study's two pairs (10 cells x 11 runs), ~30 more
for ``--strong``.

Writes ``WORK/distill_unlabeled.json`` (resumable: finished runs are kept) and prints the
tables; ``--write`` puts them in RESULTS.md between ``<!-- distill_unlabeled:begin/end -->``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import data_efficient as de  # noqa: E402
import learn_study as study  # noqa: E402  (regimes, score, ms/mean)
from self_train_ablation import CARRIED  # noqa: E402

from kcv import options, runs  # noqa: E402
from kcv.train import TrainConfig, train  # noqa: E402

BEGIN, END = "<!-- distill_unlabeled:begin -->", "<!-- distill_unlabeled:end -->"


def cells(work: Path) -> list:
    """``[(regime, seed)]`` of the study cells whose scratch run, teachers and unlabeled spec exist."""
    found = []
    for scratch in sorted((work / "runs").glob("*-s[0-9]*-scratch")):
        regime, seed = scratch.name[: -len("-scratch")].rsplit("-s", 1)
        st = work / "runs" / f"{regime}-st-s{seed}"
        if ((scratch / "metrics.json").is_file() and (st / "rounds" / "round0" / "model.keras").is_file()
                and (work / "runs" / f"{regime}-s{seed}-long" / "model.keras").is_file()):
            found.append((regime, int(seed)))
    return found


# The `strong` pair (``--strong``): the `wide` teacher's architecture and start trained on many
# more labels than the student has (per class for classification, images for segmentation) —
# the teacher that knows more than the student's labels, as a big pretrained model would, which
# is what distillation is for; the study's own two teachers learnt from the student's labels.
STRONG_LABELS = {"classification": 200, "segmentation": 240}
STRONG_EPOCHS = 10
# (T, alpha, with --unlabeled) of the strong pair: labels only at kcv's default, the two alphas
# that led with the study's own pairs, and T 1 (which won the docs' strong-teacher example)
STRONG_VARIANTS = ((4.0, options.DEFAULT_ALPHA, False), (4.0, 0.5, True), (4.0, 0.1, True), (1.0, 0.1, True))


def strong_teacher(work: Path, regime_name: str, seed: int, wide: Path, num_val: int) -> Path:
    """The `strong` teacher of one cell, trained once (``WORK/runs/<regime>-s<seed>-strong``) on
    ``WORK/data/<regime>-teacher`` (the regime's validation images, its labelled ones among the
    teacher's)."""
    regime = study.REGIMES[regime_name]
    run = work / "runs" / f"{regime_name}-s{seed}-strong"
    if (run / "metrics.json").is_file():
        return run
    data = work / "data" / f"{regime_name}-teacher"
    if not data.exists():
        if regime.task == "segmentation":
            study.write_segmentation(data, STRONG_LABELS["segmentation"], num_val, regime.size, 1)
        else:
            de.write_folder(data, STRONG_LABELS["classification"], regime.size, 1, n_val=num_val,
                            transform=study.harden if regime.hard else None)
    cfg = runs.load_config(wide)
    return Path(train(TrainConfig(**{**{k: cfg[k] for k in CARRIED if cfg.get(k) is not None}, "data": str(data),
                                     "epochs": STRONG_EPOCHS}, out=str(work / "runs"), name=run.name, verbose=0)))


def strong_pair(work: Path, res: dict, student: dict, scratch: Path, wide: Path, unlabeled: str, out: str) -> dict:
    """The `strong` pair's runs of one cell (``res["strong"]``), each variant trained once."""
    tag = f"{res['regime']}-s{res['seed']}"
    teacher = strong_teacher(work, res["regime"], res["seed"], wide, runs.load_config(scratch)["num_val"])
    strong = res.get("strong") or {"teacher": study.score(teacher), "runs": []}
    have = {(r["T"], r["alpha"], r["unlabeled"]) for r in strong["runs"]}
    for t, a, unl in STRONG_VARIANTS:
        if (t, a, unl) in have:
            continue
        run = train(TrainConfig(**student, out=out, name=f"{tag}-strong-T{t:g}-a{a:g}" + ("-unl" if unl else ""),
                                teacher=str(teacher), temperature=t, alpha=a, unlabeled=unlabeled if unl else None,
                                baseline=str(scratch), verbose=0))
        report = runs.read_json(Path(run) / "metrics.json")["distillation"]
        strong["runs"].append({"T": t, "alpha": a, "unlabeled": unl, "score": report["student"],
                               "gain": report["gain"], "steps": de.steps(run), "warnings": report["warnings"]})
        print(f"{tag} strong teacher ({strong['teacher']:.3f}) T {t:g} α {a:g}{' + unlabeled' if unl else ''}: "
              f"{report['student']:.3f} (scratch {res['scratch']:.3f})", flush=True)
    return strong


def cell(work: Path, regime: str, seed: int, variants: list, done: dict,
         with_strong: bool = False) -> dict:
    """Every variant of one (regime, seed); runs already in ``done`` (by name) are not re-trained."""
    tag = f"{regime}-s{seed}"
    scratch = work / "runs" / f"{tag}-scratch"
    cfg = runs.load_config(scratch)
    st = runs.load_config(work / "runs" / f"{regime}-st-s{seed}")["self_training"]
    teachers = {"wide": Path(st["summary"][0]["run"]), "long": work / "runs" / f"{tag}-long"}
    student = {k: cfg[k] for k in CARRIED if cfg.get(k) is not None}
    out = str(work / "distill_unlabeled")
    res = done.get(tag) or {"regime": regime, "seed": seed, "scratch": study.score(scratch),
                            "scratch_steps": de.steps(scratch), "unlabeled": st["unlabeled"],
                            "teachers": {p: study.score(t) for p, t in teachers.items()}, "runs": []}
    have = {(r["pair"], r.get("T", 4.0), r["alpha"]) for r in res["runs"]}
    for pair, teacher in teachers.items():
        for t, a in variants:
            if (pair, t, a) in have:
                continue
            name = f"{tag}-{pair}-unl-a{a:g}" + ("" if t == 4 else f"-T{t:g}")  # T 4: the first runs' names
            run = train(TrainConfig(**student, out=out, name=name, teacher=str(teacher), temperature=t, alpha=a,
                                    unlabeled=st["unlabeled"], baseline=str(scratch), verbose=0))
            report = runs.read_json(Path(run) / "metrics.json")["distillation"]
            res["runs"].append({"pair": pair, "T": t, "alpha": a, "score": report["student"], "gain": report["gain"],
                                "steps": de.steps(run), "warnings": report["warnings"]})
            print(f"{tag} {pair} T {t:g} α {a:g} + unlabeled: {report['student']:.3f} "
                  f"(scratch {res['scratch']:.3f})", flush=True)
    if "same_steps" not in res:
        ratio = max(r["steps"] for r in res["runs"]) / res["scratch_steps"]
        epochs = max(1, round(cfg["epochs"] * ratio))
        run = train(TrainConfig(**{**student, "epochs": epochs}, out=out, name=f"{tag}-scratch-same-steps",
                                verbose=0))
        res["same_steps"] = {"score": study.score(run), "epochs": epochs, "steps": de.steps(run)}
        print(f"{tag} scratch for {epochs} epochs (same steps): {res['same_steps']['score']:.3f}", flush=True)
    if with_strong:
        res["strong"] = strong_pair(work, res, student, scratch, teachers["wide"], st["unlabeled"], out)
    return res


def labels_only(work: Path) -> dict:
    """``{(regime, seed): mean gain over the pairs}`` of the study's own labels-only distillation at
    kcv's defaults, from ``WORK/results.json`` (empty if absent)."""
    defaults = {"temperature": {f.name: f.default for f in dataclasses.fields(TrainConfig)}["temperature"],
                "alpha": options.DEFAULT_ALPHA}  # --alpha's default on the labelled images alone
    path = work / "results.json"
    if not path.is_file():
        return {}
    out = {}
    for c in json.loads(path.read_text())["cells"]:
        gains = [r["gain"] for r in c["distillation"]["runs"] if r["T"] == defaults["temperature"]
                 and r["alpha"] == defaults["alpha"] and not r["warmup"]]
        if gains:
            out[(c["regime"], c["seed"])] = study.mean(gains)
    return out


def _variant(run: dict) -> tuple:
    return run.get("T", 4.0), run["alpha"]


def tables(results: list, variants: list, study_gains: dict) -> str:
    names = [r for r in study.REGIMES if any(c["regime"] == r for c in results)]
    seeds = sorted({c["seed"] for c in results})

    def mine(name):
        return [c for c in results if c["regime"] == name]

    def pair_mean(c, v, key="score"):
        return study.mean([r[key] for r in c["runs"] if _variant(r) == v])  # the study's two pairs

    lines = [f"Seeds {seeds}; scores and gains are mean ± std over seeds, each seed's "
             "distilled score averaged over the two teachers (`wide`, `long`). *Same steps*: scratch "
             "trained for as many optimiser steps as the distilled run with `--unlabeled` (its epochs × "
             "(labelled + unlabeled) / labelled).", "",
             "| regime | scratch | scratch, same steps | teachers `wide` / `long` | labels only, "
             f"T 4 α {options.DEFAULT_ALPHA:g}: gain | "
             + " | ".join(f"+ unlabeled T {t:g} α {a:g}: student | gain | gain vs same steps" for t, a in variants)
             + " |",
             "|---|---:|---:|---|---:|" + "---:|---:|---:|" * len(variants)]
    wins = {v: [0, 0] for v in variants}
    for name in names:
        cs = mine(name)
        row = [name, study.ms(c["scratch"] for c in cs), study.ms(c["same_steps"]["score"] for c in cs),
               f"{study.ms(c['teachers']['wide'] for c in cs)} / {study.ms(c['teachers']['long'] for c in cs)}",
               study.ms([study_gains.get((name, c["seed"])) for c in cs], sign=True)]
        for v in variants:
            gain = [pair_mean(c, v) - c["scratch"] for c in cs]
            vs_steps = [pair_mean(c, v) - c["same_steps"]["score"] for c in cs]
            wins[v][0] += study.mean(gain) > 0
            wins[v][1] += study.mean(vs_steps) > 0
            row += [study.ms(pair_mean(c, v) for c in cs), study.ms(gain, sign=True), study.ms(vs_steps, sign=True)]
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", "| with `--unlabeled` | regimes where distillation beats scratch | mean gain | ... beats scratch "
              "of the same steps | mean gain vs same steps |", "|---|---:|---:|---:|---:|"]
    for v in variants:
        gain = study.mean([study.mean([pair_mean(c, v) - c["scratch"] for c in mine(n)]) for n in names])
        vs_steps = study.mean([study.mean([pair_mean(c, v) - c["same_steps"]["score"] for c in mine(n)])
                               for n in names])
        lines.append(f"| T {v[0]:g} α {v[1]:g} | {wins[v][0]}/{len(names)} | {gain:+.3f} | {wins[v][1]}/{len(names)} "
                     f"| {vs_steps:+.3f} |")
    lines += ["", "Per teacher (gain over scratch, mean ± std over seeds):", "",
              "| regime | " + " | ".join(f"`{p}` T {t:g} α {a:g}" for t, a in variants for p in ("wide", "long"))
              + " |", "|---|" + "---:|" * (2 * len(variants))]
    for name in names:
        cells_ = mine(name)
        lines.append(f"| {name} | " + " | ".join(
            study.ms([next(r["gain"] for r in c["runs"] if r["pair"] == p and _variant(r) == v) for c in cells_],
                     sign=True) for v in variants for p in ("wide", "long")) + " |")
    return "\n".join(lines)


def strong_table(results: list) -> str:
    """The `strong` pair's table (cells that have it)."""
    names = [r for r in study.REGIMES if any(c["regime"] == r and "strong" in c for c in results)]
    if not names:
        return ""
    head = ["labels only" if not unl else f"+ unlabeled T {t:g} α {a:g}" for t, a, unl in STRONG_VARIANTS]
    lines = [f"**A strong teacher** (`--strong`): the `wide` architecture and start trained {STRONG_EPOCHS} epochs on "
             f"{STRONG_LABELS['classification']} labelled images a class ({STRONG_LABELS['segmentation']} for "
             "segmentation) — more than the student's labels, as a big pretrained model knows more — distilled "
             f"into the same student: on the labelled images alone (T 4, α {options.DEFAULT_ALPHA:g}) and with "
             "`--unlabeled` at T 4 α 0.5 and 0.1, and T 1 α 0.1. Gains over scratch of the same epochs; with "
             "`--unlabeled` also over scratch of the same steps.", "",
             "| regime | scratch | scratch, same steps | strong teacher | " + " | ".join(
                 f"{h}: student | gain" + (" | gain vs same steps" if unl else "")
                 for h, (_, _, unl) in zip(head, STRONG_VARIANTS)) + " |",
             "|---|---:|---:|---:|" + "".join("---:|---:|---:|" if unl else "---:|---:|"
                                                for _, _, unl in STRONG_VARIANTS)]
    wins = {v: [0, 0] for v in STRONG_VARIANTS}
    for name in names:
        cs = [c for c in results if c["regime"] == name and "strong" in c]
        row = [name, study.ms(c["scratch"] for c in cs), study.ms(c["same_steps"]["score"] for c in cs),
               study.ms(c["strong"]["teacher"] for c in cs)]
        for v in STRONG_VARIANTS:
            score = [next(r["score"] for r in c["strong"]["runs"] if (r["T"], r["alpha"], r["unlabeled"]) == v)
                     for c in cs]
            gain = [x - c["scratch"] for x, c in zip(score, cs)]
            wins[v][0] += study.mean(gain) > 0
            row += [study.ms(score), study.ms(gain, sign=True)]
            if v[2]:
                vs = [x - c["same_steps"]["score"] for x, c in zip(score, cs)]
                wins[v][1] += study.mean(vs) > 0
                row.append(study.ms(vs, sign=True))
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", "| strong teacher | regimes where distillation beats scratch | ... of the same steps |",
              "|---|---:|---:|"]
    for h, v in zip(head, STRONG_VARIANTS):
        lines.append(f"| {h} | {wins[v][0]}/{len(names)} | {f'{wins[v][1]}/{len(names)}' if v[2] else '—'} |")
    return "\n".join(lines)


def combined_table(results: list) -> str:
    """α with ``--unlabeled`` over all three pairs (the study's two and the strong one): per regime
    the mean of the pairs' mean-over-seeds gains; the choice of ``--alpha``'s default with
    ``--unlabeled`` is the α with the highest mean over regimes (ties: against the same steps)."""
    names = [r for r in study.REGIMES if any(c["regime"] == r and "strong" in c for c in results)]
    alphas = sorted({a for t, a, unl in STRONG_VARIANTS if unl and t == 4})
    lines = ["**Choosing α with `--unlabeled`, all three pairs** (T 4; per regime the mean over the pairs "
             "`wide`, `long`, `strong` of their mean gain over seeds):", "",
             "| α | " + " | ".join(names) + " | mean over regimes | regimes > scratch | regimes > scratch of the "
             "same steps | mean vs same steps |", "|---:|" + "---:|" * (len(names) + 4)]
    for a in alphas:
        gains, vs_steps = [], []
        for name in names:
            cs = [c for c in results if c["regime"] == name and "strong" in c]
            per_pair = {"same": [], "steps": []}
            for pair in ("wide", "long", "strong"):
                runs_ = ([next(r for r in c["runs"] if r["pair"] == pair and _variant(r) == (4.0, a)) for c in cs]
                         if pair != "strong" else
                         [next(r for r in c["strong"]["runs"] if (r["T"], r["alpha"], r["unlabeled"]) == (4.0, a, True))
                          for c in cs])
                per_pair["same"].append(study.mean([r["score"] - c["scratch"] for r, c in zip(runs_, cs)]))
                per_pair["steps"].append(study.mean([r["score"] - c["same_steps"]["score"] for r, c in zip(runs_, cs)]))
            gains.append(study.mean(per_pair["same"]))
            vs_steps.append(study.mean(per_pair["steps"]))
        lines.append(f"| {a:g} | " + " | ".join(f"{g:+.3f}" for g in gains)
                     + f" | {study.mean(gains):+.3f} | {sum(g > 0 for g in gains)}/{len(names)} "
                     f"| {sum(g > 0 for g in vs_steps)}/{len(names)} | {study.mean(vs_steps):+.3f} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = study.addon_parser(__doc__, "4:0.1,4:0.5,4:0.9,1:0.1,1:0.5", "T:alpha,...")
    ap.add_argument("--strong", action="store_true", help="also the `strong` teacher pair (trained here)")
    args = ap.parse_args(argv)
    work = Path(args.work)
    variants = [tuple(float(x) for x in v.split(":")) for v in args.variants.split(",")]
    de.register_bench_cnn()
    path = work / "distill_unlabeled.json"
    done = {f"{c['regime']}-s{c['seed']}": c for c in (json.loads(path.read_text()) if path.is_file() else [])}
    for regime, seed in ([] if args.table_only else cells(work)):
        tag = f"{regime}-s{seed}"
        if args.only and tag not in args.only.split(","):
            continue
        done[tag] = cell(work, regime, seed, variants, done, with_strong=args.strong)
        path.write_text(json.dumps(list(done.values()), indent=1))
    results = [c for c in done.values() if all(any(_variant(r) == v for r in c["runs"]) for v in variants)]
    text = tables(results, variants, labels_only(work))
    if any("strong" in c for c in results):
        text += "\n\n" + strong_table(results) + "\n\n" + combined_table(results)
    print(text)
    if args.write:
        de.write_results(text, BEGIN, END, "Distillation with the regime's unlabeled images (issue 18)")


if __name__ == "__main__":
    main()
