"""``exports/report.json``: what ``kcv export`` verified and ``kcv benchmark`` measured, and
its Markdown twin ``exports/report.md``.

Export writes one entry per format (``formats``: file, runtime, status, the comparison with
Keras); benchmark adds a ``benchmark`` section; ``kcv predict`` picks its runtime from it.
A file counts only if its entry says it passed verification and the file is still there.
"""

from __future__ import annotations

from pathlib import Path

from kcv import runs
from kcv.contracts import EXPORTS_DIR, REPORT_FILE, REPORT_MD_FILE

PASSED = ("ok", "accepted")  # "accepted": over the metric-drop rule, kept by --allow-drop


def write(run_dir, report: dict) -> Path:
    """Write ``report.json`` and ``report.md`` (each atomically); returns the JSON's path."""
    out = Path(run_dir) / EXPORTS_DIR
    path = runs.write_json(out / REPORT_FILE, report)
    runs.write_text(out / REPORT_MD_FILE, report_markdown(report))
    return path


def verified(run_dir, report: dict, statuses=PASSED) -> dict[str, tuple[Path, dict]]:
    """``{format: (file, entry)}`` of the exports whose status is in ``statuses`` and whose
    file still exists."""
    out = Path(run_dir) / EXPORTS_DIR
    return {k: (out / e["file"], e) for k, e in report.get("formats", {}).items()
            if e.get("status") in statuses and (out / e["file"]).exists()}


def benchmark_table(section: dict) -> str:
    """The benchmark rows as a Markdown table (also what ``kcv benchmark`` prints)."""
    head = ("| format | size MB | metric | Δ vs Keras (pts) | p50 ms | p95 ms | init ms | peak MB |\n"
            "|---|---:|---:|---:|---:|---:|---:|---:|")
    lines = [head]
    for r in section["rows"]:
        delta = "—" if r["format"] == "keras" or "delta_points" not in r else f"{r['delta_points']:+.2f}"
        peak = "n/a" if r["peak_mb"] is None else f"{r['peak_mb']:.1f}"
        metric = "—" if r["metric"] is None else f"{r['metric_name']} {r['metric']:.4f}"  # a bare file: no data
        lines.append(f"| {r['format']} | {r['size_mb']:.3f} | {metric} | {delta} | "
                     f"{r['p50_ms']:.2f} | {r['p95_ms']:.2f} | {r['init_ms']:.0f} | {peak} |")
    return "\n".join(lines)


def verification_table(report: dict) -> str:
    """The export verification entries as a Markdown table."""
    lines = ["| format | file | MB | ×fp32 | max abs Δprob | agreement | metric keras → file | rule | status |",
             "|---|---|---:|---:|---:|---:|---|---|---|"]
    for name, e in report.get("formats", {}).items():
        if "metric" not in e:  # refused before verification (Flex ops)
            lines.append(f"| {name} | — | — | — | — | — | — | — | {e.get('status')}: {e.get('reason', '')} |")
            continue
        ratio = f"{e['size_vs_fp32']:.3f}" if "size_vs_fp32" in e else "—"
        lines.append(f"| {name} | {e['file']} | {e['size_mb']:.3f} | {ratio} | {e['max_abs_diff']:.2e} | "
                     f"{e['agreement']:.2%} | {e['metric']} {e['metric_keras']:.4f} → {e['metric_file']:.4f} | "
                     f"{e.get('rule', '').replace('|', '&#124;')} | {e['status']} |")
    return "\n".join(lines)


def report_markdown(report: dict) -> str:
    """``exports/report.md``: verification and (if run) benchmark tables."""
    parts = [f"# Exports of {report.get('run', '')}", "",
             f"Verification on {report.get('samples', '?')} validation images against the Keras inference model.",
             "", verification_table(report)]
    bench = report.get("benchmark")
    if bench:
        m = bench["machine"]
        parts += ["", f"## Benchmark (batch 1, {bench['threads']} threads, {bench['runs']} runs, "
                      f"{m['cores']} cores, {m['cpu']})", "", benchmark_table(bench)]
    return "\n".join(parts) + "\n"
