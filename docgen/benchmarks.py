"""The benchmarks page's tables: one per committed result file (docgen.code.bench_results),
every number read from the file, none typed by hand."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from docgen import code

RUN_FIELDS = ("date", "cpu", "cores", "command")  # what says where a result comes from
FLOOR = "turbo_floor"


def page() -> str:
    results = code.bench_results()
    if not results:
        raise FileNotFoundError("no benchmark result: docgen.code.bench_results() found none")
    return "\n\n".join(result_section(path) for path in results)


def result_section(path: Path) -> str:
    result = json.loads(path.read_text())
    run = result.get("run") or {}
    missing = [field for field in RUN_FIELDS if field not in run]
    if missing:
        raise ValueError(f"{path.name}: its `run` block lacks {', '.join(missing)}")
    title = f"### {run['date']}: {run['cpu']}, {run['cores']} cores"
    where = _table(
        ("run", ""),
        [
            ("date", run["date"]),
            ("CPU", run["cpu"]),
            ("cores", run["cores"]),
            ("command", f"`{run['command']}`"),
            *[(key, run[key]) for key in run if key not in RUN_FIELDS],
            ("result file", f"`{path.relative_to(code.REPO)}`"),
            ("images (slow baselines)", f"{result['images']} ({result['slow_images']})"),
            ("rounds, interleaved", result["repeats"]),
            ("workers", result["workers"]),
        ],
    )
    return "\n\n".join([title, where, throughput(result), also_measured(result)])


def throughput(result: dict) -> str:
    speeds = result["images_per_s_median"]
    ratios, rounds = result["ratios_median"], result["ratios_per_round"]
    lines = []
    for variant, speed in speeds.items():
        key = f"{variant} / {FLOOR}"
        ratio = "1" if variant == FLOOR else _bold(ratios.get(key))
        per_round = ", ".join(f"{r:.3f}" for r in rounds.get(key, ()))
        lines.append((f"`{variant}`", speed, ratio, per_round))
    return _table(("variant", "img/s (median)", f"/ {FLOOR} (median)", "per round"), lines)


def also_measured(result: dict) -> str:
    facts = []
    ratios = result["ratios_median"]
    for key in ratios:
        if not key.endswith(f"/ {FLOOR}"):
            facts.append((f"`{key}` (median)", ratios[key]))
    budget = result.get("service_time_budget_s", {})
    facts += [(f"service job: `{key}`", value) for key, value in budget.items()]
    post = result.get("service_post_to_running")
    if post:
        facts.append(
            (
                "POST -> RUNNING, warm service",
                f"median {post['median_s']} s, max {post['max_s']} s over {post['jobs']} jobs",
            )
        )
    memory = result.get("memory_growth")
    if memory:
        sizes = " and ".join(
            f"{rss} MiB at {n} images" for n, rss in zip(memory["images"], memory["peak_rss_mib"])
        )
        facts.append(
            ("peak RSS, every Ray process and the driver", f"{sizes} (x{memory['ratio']})")
        )
    for kind, values in result.get("s3_images_per_s_per_core", {}).items():
        shown = ", ".join(f"{k}: {v}" for k, v in values.items())
        facts.append((f"S3 at added latency, {kind} (img/s per core)", shown))
    video = result.get("video")
    if video:
        speeds = video["decoded_frames_per_s_median"]
        facts.append(
            (
                f"video: {video['clips']} clips, {video['decoded_frames']} frames decoded",
                f"{speeds['motoray']} frames/s against the floor's {speeds['floor']} "
                f"({_bold(video['ratio_median'])}; per round "
                + ", ".join(f"{r:.3f}" for r in video["ratios_per_round"])
                + ")",
            )
        )
    cold = result.get("cold")
    if cold:
        facts.append(("cold `motoray run`, one image (median)", f"{cold['motoray_run_s']} s"))
        facts.append(
            ("a bare local Ray started and stopped (median)", f"{cold['ray_start_stop_s']} s")
        )
    if "ray_job_submit_true_s" in result:
        facts.append(
            ("`ray job submit -- true` on the warm cluster", f"{result['ray_job_submit_true_s']} s")
        )
    fidelity = result.get("fidelity")
    if fidelity:
        facts.append(
            (
                "in-decoder downscale against full decode + resize",
                f"mean abs diff {fidelity['mean_abs_diff']:.2f}, "
                f"PSNR >= {fidelity['psnr_db_min']:.1f} dB",
            )
        )
    return _table(("also measured", "value"), facts)


def _bold(value: Any) -> str:
    return "" if value is None else f"**{value}**"


def _table(heads: tuple[str, ...], rows: list[tuple]) -> str:
    lines = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)
