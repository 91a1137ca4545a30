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
    sections = [title, where, throughput(result), also_measured(result)]
    parts = (service_costs(result), idle(result), load(result), scale(result))
    parts += (near_duplicates(result),)
    sections += [part for part in parts if part]
    return "\n\n".join(sections)


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
    for key, kind in (("video", "video"), ("video_interlaced", "interlaced video")):
        video = result.get(key)
        if video:
            speeds = video["decoded_frames_per_s_median"]
            facts.append(
                (
                    f"{kind}: {video['clips']} clips, {video['decoded_frames']} frames decoded"
                    + (f" (run of {video['measured']})" if "measured" in video else ""),
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


def service_costs(result: dict) -> str:
    """A job's fixed cost on the warm service, and `ray job submit`'s beyond Ray's own."""
    facts = []
    fixed = result.get("fixed_cost")
    if fixed:
        facts.append(
            (
                f"1-image POST -> SUCCEEDED on the warm service, median of {fixed['jobs']}",
                f"**{fixed['wall_s_median']} s**; CPU beyond its task, every process: "
                f"**{fixed['cpu_s_beyond_task_median']} CPU-s** (its task: "
                f"{fixed['task_cpu_s']} CPU-s; the client's: {fixed['client_cpu_s_median']})",
            )
        )
    small = result.get("small_job")
    if small:
        ways = {"plain_tasks": "as plain Ray tasks", "dataset": "as a Ray Data dataset"}
        shown = "; ".join(
            f"{label}: {small[way]['s']} s, {small[way]['cpu_s']} CPU-s"
            for way, label in ways.items()
            if way in small
        )
        facts.append((f"a 1-image job from a warm driver, median of {small['jobs']}", shown))
    submit = result.get("ray_job_submit")
    if submit:
        medians = [f"{k} {v} s" for k, v in submit.items() if k.endswith("_s") and "over" not in k]
        facts.append(
            (
                "`ray job submit -- motoray run` beyond `ray job submit -- true`",
                f"**{submit['overhead_s']} s** (medians: {', '.join(medians)})",
            )
        )
    return _table(("per job", "value"), facts) if facts else ""


def idle(result: dict) -> str:
    """An idle service and its Ray, per process (psutil over every process of both)."""
    tables = result.get("idle")
    if not tables:
        return ""
    start, after = tables["after_start"], tables["after_jobs"]
    titles = list(dict.fromkeys(row["title"] for t in (start, after) for row in t["processes"]))
    cores = {
        name: {row["title"]: row["cores"] for row in table["processes"]}
        for name, table in (("start", start), ("after", after))
    }
    rows = [
        (f"`{title}`", cores["start"].get(title, ""), cores["after"].get(title, ""))
        for title in titles
        if max(cores["start"].get(title, 0), cores["after"].get(title, 0)) >= 0.001
    ]
    rows.append(("**all**", f"**{start['cores']}**", f"**{after['cores']}**"))
    heads = (
        "idle: cores used by",
        f"right after start ({start['seconds']:g} s)",
        f"after the last job ({after['seconds']:g} s)",
    )
    return _table(heads, rows)


def load(result: dict) -> str:
    """`python -m benchmarks.load` runs recorded into the result (`--record`)."""
    runs = result.get("load") or []
    rows = []
    for run in runs:
        routes = "; ".join(
            f"{route}: p50 {r['p50_ms']} ms, p99 **{r['p99_ms']} ms** (n={r['n']})"
            for route, r in run["routes"].items()
        )
        rows.append(
            (
                run["date"],
                f"{run['clients']} clients, {run['duration_s']:g} s",
                routes,
                f"{run['server_errors']} 5xx, {run['transport_errors']} transport errors, "
                f"{run['jobs_lost']} of {run['jobs_accepted']} jobs lost",
            )
        )
    return _table(("load run", "clients", "latency per route", "errors"), rows) if rows else ""


def scale(result: dict) -> str:
    """`python -m benchmarks.scale --record`: the driver's cost as the keys grow."""
    found = result.get("scale")
    if not found:
        return ""
    plan = found["plan"]
    rows = [
        (
            f"plan of {run['keys']:,} keys (`kind: manifest`, no pixels)",
            f"driver peak RSS {run['driver_peak_rss_mib']} MiB; by image: listing "
            f"{run['image']['listing_s']} s, split {run['image']['split_s']} s; by folder: "
            f"listing {run['folder']['listing_s']} s, split {run['folder']['split_s']} s",
        )
        for run in plan["runs"]
    ]
    rows.append(
        ("driver peak RSS, largest / smallest plan", _bold(plan["peak_rss_largest_over_smallest"]))
    )
    job = found.get("job")
    for run in job["runs"] if job else ():
        rows.append(
            (
                f"a job on {run['images']:,} images (hard links to small JPEGs)",
                f"{run['wall_s']} s, {run['images_per_s']} images/s, driver peak RSS "
                f"{run['driver_peak_rss_mib']} MiB",
            )
        )
    if job:
        rows.append(
            ("images/s, largest job / smallest", _bold(job["images_per_s_largest_over_smallest"]))
        )
    listing = found["listing"]
    rows.append(
        (
            f"S3 listing of {listing['keys']:,} keys at {listing['latency_ms']} ms a request",
            f"one LIST stream {listing['serial_s']} s ({listing['serial_requests']} requests), "
            f"listing tasks {listing['parallel_s']} s ({listing['parallel_requests']} requests): "
            f"{_bold(listing['serial / parallel'])}x",
        )
    )
    # Each line carries the date it was measured (`--lines` measures some of them again).
    dates = {line: found[line].get("date", found.get("date")) for line in ("plan", "job", "listing")
             if line in found}  # fmt: skip
    rows.append(("measured (UTC)", ", ".join(f"{line} {date}" for line, date in dates.items())))
    return _table((f"scale ({found['cores']} cores)", "measured"), rows)


def near_duplicates(result: dict) -> str:
    """`python -m benchmarks.near_duplicates --record`: its cost on the seed request, and
    the driver's memory at scale, against the same jobs without it."""
    block = result.get("near_duplicates")
    if not block:
        return ""
    seconds, ratios, targets = block["seconds"], block["ratios_median"], block["targets"]
    rows = [
        (
            f"seed request, {block['images']} images: {name}",
            ", ".join(f"{s} s" for s in seconds[variant]),
            "" if variant == "without" else f"**{ratios[name]}** (target <= {targets[name]})",
        )
        for variant, name in (
            ("without", "without"),
            ("first", "first / without"),
            ("rerun", "rerun / without"),
        )
    ]
    rss = block["driver_peak_rss"]
    rows.append(
        (
            f"driver peak RSS, {rss['images']} images{_frame(rss)}: with / without"
            + (f" (run of {rss['measured']})" if "measured" in rss else ""),
            f"{rss['with_mib']} / {rss['without_mib']} MiB",
            f"**{rss['ratio']}** (target <= {targets['rss with / without']})",
        )
    )
    heads = (
        f"near_duplicates ({block['run']['date']}, {block['rounds']} rounds)",
        "per round",
        "median ratio",
    )
    return _table(heads, rows)


def _frame(rss: dict) -> str:
    """The memory jobs' frame size, where the block records it."""
    return f" of {rss['frame'][0]}x{rss['frame'][1]}" if "frame" in rss else ""


def _bold(value: Any) -> str:
    return "" if value is None else f"**{value}**"


def _table(heads: tuple[str, ...], rows: list[tuple]) -> str:
    lines = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)
