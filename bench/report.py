"""Turning what a bench run measured into figures, a JSON report, a Markdown summary and a plot."""
import json
from pathlib import Path

from histograms import quantiles
from scrapes import histogram_delta, histogram_mean_buckets, histogram_quantile, metric_delta


def rate(n, seconds):
    return round(n / seconds, 1) if seconds and seconds > 0 else None


def q3(hist):
    q = quantiles(hist, (0.5, 0.95, 0.99))
    return {"p50_ms": q[0.5], "p95_ms": q[0.95], "p99_ms": q[0.99], "n": sum(hist.values())}


def window_sum(series, name, start, end):
    return sum(c.get(name, 0) for s, c in series.items() if start <= s < end)


def peak_rate(series, name, start, end, width=5):
    best = 0
    for s in range(start, max(start + 1, end - width + 1)):
        best = max(best, sum(series.get(t, {}).get(name, 0) for t in range(s, s + width)))
    return round(best / width, 1)


def server_figures(before, after):
    """What the server's own metrics say happened between two scrapes."""
    reqs = {}
    for (name, labels), _v in (after or {}).items():
        if name == "boxoffice_requests_total":
            d = dict(labels)
            key = f"{d['event']}:{d['outcome']}"
            reqs[key] = metric_delta(before, after, name, event=d["event"], outcome=d["outcome"])
    results = {}
    for (name, labels), _v in (after or {}).items():
        if name == "boxoffice_results_total":
            d = dict(labels)
            key = f"{d['event']}:{d['outcome']}"
            results[key] = metric_delta(before, after, name, event=d["event"],
                                        outcome=d["outcome"])
    lat = {}
    for event in ("hold_result", "payment_result", "release_result"):
        b = histogram_delta(before, after, "boxoffice_click_to_result_seconds", event=event)
        if b and b[-1][1] > 0:
            lat[event] = {f"p{int(q * 100)}_ms": round(histogram_quantile(b, q) * 1000, 1)
                          for q in (0.5, 0.95, 0.99)}
            lat[event]["n"] = int(b[-1][1])
    batch = histogram_delta(before, after, "boxoffice_task_batch_requests")
    batches = int(batch[-1][1]) if batch else 0
    batch_sum = metric_delta(before, after, "boxoffice_task_batch_requests_sum")
    return {
        "requests": {k: int(v) for k, v in sorted(reqs.items()) if v},
        "results": {k: int(v) for k, v in sorted(results.items()) if v},
        "click_to_result": lat,
        "task_batches": {
            "tasks": batches, "requests": int(batch_sum),
            "mean_requests_per_task": round(batch_sum / batches, 1) if batches else None,
            "p50": _q(batch, 0.5), "p99": _q(batch, 0.99),
            "buckets_le": {str(int(le)) if le != float("inf") else "+Inf": int(c)
                           for le, c in histogram_mean_buckets(batch).items() if c}},
        "seats_changed": {
            "messages": int(metric_delta(before, after, "boxoffice_seats_changed_batches_total")),
            "seat_updates": int(metric_delta(before, after,
                                             "boxoffice_seats_changed_seats_total")),
            "deliveries": int(metric_delta(before, after,
                                           "boxoffice_seats_changed_recipients_total"))},
    }


def _q(buckets, q):
    v = histogram_quantile(buckets, q)
    return round(v, 1) if v is not None else None


def cpu_table(meter, start_t, end_t):
    """{group: {cpu_s, cores}} between the samples nearest start_t and end_t."""
    samples = meter.samples
    if len(samples) < 2:
        return {}
    a = min(samples, key=lambda s: abs(s[0] - start_t))
    b = min(samples, key=lambda s: abs(s[0] - end_t))
    span = b[0] - a[0]
    out = {}
    for g in b[1]:
        used = b[1][g] - a[1].get(g, 0.0)
        out[g] = {"cpu_s": round(used, 1),
                  "cores": round(used / span, 2) if span > 0 else None}
    out["_window_s"] = round(span, 1)
    return out


def cpu_per(cpu, n):
    """ms of server CPU (every group but the load generator) per unit of n, or None."""
    if not n:
        return None
    used = sum(v["cpu_s"] for g, v in cpu.items() if not g.startswith("_") and g != "loadgen")
    return round(1000 * used / n, 1)


def write_markdown(path, title, sections):
    """sections: [(heading, text or [(k, v)] rows)]."""
    lines = [f"# {title}", ""]
    for heading, body in sections:
        lines += [f"## {heading}", ""]
        if isinstance(body, str):
            lines += [body, ""]
        else:
            lines += ["| | |", "|---|---|"]
            lines += [f"| {k} | {v} |" for k, v in body]
            lines.append("")
    Path(path).write_text("\n".join(lines))


def plot(path, t_end, series, hist_series, cpu_samples, t0, lines, title, t_start=0):
    """Throughput, latency and CPU over time (PNG), from t_start (the sale's start, s after t0)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    xs = list(range(int(t_start), max(int(t_start) + 1, int(t_end) + 1)))
    fig, axes = plt.subplots(3, 1, figsize=(11, 10), sharex=True)
    for name, label in lines:
        axes[0].plot(xs, [series.get(x, {}).get(name, 0) for x in xs], label=label)
    axes[0].set_ylabel("per second")
    axes[0].legend(loc="upper right", fontsize=8)
    axes[0].grid(alpha=.3)
    for name, label in (("hold_click_to_result", "click→hold_result"),
                        ("pay_click_to_result", "click→payment_result"),
                        ("lag_commit", "seats_changed lag (commit)")):
        per = hist_series.get(name, {})
        for q, style in ((0.5, "-"), (0.99, "--")):
            ys = [quantiles(per[x], (q,))[q] if x in per else None for x in xs]
            axes[1].plot(xs, [y if y is not None else float("nan") for y in ys], style,
                         label=f"{label} p{int(q * 100)}")
    axes[1].set_ylabel("ms")
    axes[1].set_yscale("log")
    axes[1].legend(loc="upper right", fontsize=8)
    axes[1].grid(alpha=.3)
    if len(cpu_samples) > 1:
        groups = list(cpu_samples[-1][1])
        for g in groups:
            pts = []
            for (ta, a), (tb, b) in zip(cpu_samples, cpu_samples[1:]):
                if tb > ta and tb - t0 >= t_start:
                    pts.append((tb - t0, (b.get(g, 0) - a.get(g, 0)) / (tb - ta) * 100))
            axes[2].plot([p[0] for p in pts], [p[1] for p in pts], label=g)
    axes[2].set_ylabel("% of one core")
    axes[2].set_xlabel("seconds since the load generator started (the sale starts at the left "
                       "edge, once every buyer is connected)")
    axes[2].legend(loc="upper right", fontsize=8, ncol=4)
    axes[2].grid(alpha=.3)
    axes[0].set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def dump(path, data):
    Path(path).write_text(json.dumps(data, indent=1, default=str))


def cpu_per_granted_hold(result, cpu):
    """Milliseconds of CPU per hold granted in the sale window, by process group, with
    'server' (every group but the load generator) and 'all'; None when none was granted."""
    holds = (result["clients"]["holds_granted_per_s"] or 0) * result["window_s"]
    if not holds:
        return None
    per = {g: round(v["cpu_s"] * 1000 / holds, 2) for g, v in cpu.items()}
    per["server"] = round(sum(v["cpu_s"] for g, v in cpu.items() if g != "loadgen")
                          * 1000 / holds, 2)
    per["all"] = round(sum(v["cpu_s"] for v in cpu.values()) * 1000 / holds, 2)
    return per


def sale_targets(result):
    """The flash sale's targets (docs/BENCHMARKS.md, "Reading a report")."""
    c = result["clients"]
    granted, lat = c["holds_granted_per_s"] or 0, c["click_to_hold_result"]
    watchers = result.get("connect", {}).get("connected")
    return [
        ("≥ 1,000 holds granted / s sustained", granted >= 1000, granted),
        ("p99 click→hold_result < 250 ms", (lat["p99_ms"] or 1e9) < 250, lat["p99_ms"]),
        ("2,000 watchers across 2 web", (watchers or 0) >= 2000 and result["args"]["web"] >= 2,
         watchers),
        ("seats_changed lag p99 < 500 ms", (c["seats_changed_lag_commit"]["p99_ms"] or 1e9) < 500,
         c["seats_changed_lag_commit"]["p99_ms"]),
    ]


def summarize(result, out_dir, title, command, targets=sale_targets):
    """Print the figures, write report.json, report.md and plot.png. targets(result):
    [(what, met, measured)], to which the correctness targets are added."""
    out_dir = Path(out_dir)
    priv = result.pop("_series", None)
    c = result["clients"]
    db = result.get("db_limit") or {}
    granted = c["holds_granted_per_s"] or 0
    fraction = round(granted / db["best_claims_per_s"], 3) if db.get("best_claims_per_s") else None
    result["holds_per_s_fraction_of_db_limit"] = fraction
    cpu = {k: v for k, v in result["cpu"].items() if not k.startswith("_")}
    lat, lagc, lags = c["click_to_hold_result"], c["seats_changed_lag_commit"], \
        c["seats_changed_lag_sent"]
    srv = result["server"]
    srv_hold = srv["click_to_result"].get("hold_result", {})
    watchers = result.get("connect", {}).get("connected")
    rows = [
        ("sale window", f"{result['window_s']} s"),
        ("time to sell out", f"{result['sold_out_s']} s" if result["sold_out_s"] else
         f"not sold out ({result['seats_final']})"),
        ("buyers (= watchers) connected", f"{watchers} across {result['args']['web']} web"),
        ("hold requests / s (clients)", c["hold_requests_per_s"]),
        ("holds accepted / s (acks)", c["hold_accepted_per_s"]),
        ("shed (busy acks) / s", c["shed_per_s"]),
        ("holds granted / s (mean over the sale)", granted),
        ("holds granted / s (best 5 s)", c["holds_granted_best_5s_per_s"]),
        ("holds refused seat_unavailable / s", c["holds_refused_seat_unavailable_per_s"]),
        ("clicked holds: asked / granted / refused seat_unavailable / of which with "
         "enough seats free on the map",
         " / ".join(str(c["counts"].get(f"click_{k}", 0)) for k in (
             "requested", "granted", "refused_seat_unavailable", "refused_while_free"))),
        ("best-available holds: asked / granted / refused seat_unavailable / of which with "
         "enough seats free on the map",
         " / ".join(str(c["counts"].get(f"best_{k}", 0)) for k in (
             "requested", "granted", "refused_seat_unavailable", "refused_while_free"))),
        ("click→hold_result p50 / p95 / p99 (clients)",
         f"{lat['p50_ms']} / {lat['p95_ms']} / {lat['p99_ms']} ms (n={lat['n']})"),
        ("click→hold_result p50 / p95 / p99 (server metric)",
         f"{srv_hold.get('p50_ms')} / {srv_hold.get('p95_ms')} / {srv_hold.get('p99_ms')} ms"),
        ("seats_changed lag vs commit p50 / p99",
         f"{lagc['p50_ms']} / {lagc['p99_ms']} ms (n={lagc['n']})"),
        ("seats_changed lag vs send p50 / p99", f"{lags['p50_ms']} / {lags['p99_ms']} ms"),
        ("payments / s (mean, best 5 s)", f"{c['payments_per_s']}, "
                                          f"{c['payments_best_5s_per_s']}"),
        ("click→payment_result p50 / p99",
         f"{c['click_to_payment_result']['p50_ms']} / {c['click_to_payment_result']['p99_ms']} ms"),
        ("requests accepted / answered / unanswered",
         f"{result['accepted']} / {result['answered']} / {result['unanswered']}"),
        ("of the answered: found finished by a re-send / of which the first answer was "
         "lost on its way (only the re-send's copy came)",
         f"{result.get('found_finished_by_resend', 0)} / {result.get('first_answer_lost', 0)}"),
        ("of the answered: a re-send refused for good (never performed)",
         ", ".join(f"{k.replace('_answered_by_resend_refusal_', ' ')} {v}"
                   for k, v in sorted(c["counts"].items())
                   if "_answered_by_resend_refusal_" in k) or "none"),
        ("task batch size (server): mean, p50, p99",
         f"{srv['task_batches']['mean_requests_per_task']}, {srv['task_batches']['p50']}, "
         f"{srv['task_batches']['p99']}"),
        ("raw DB claim limit (db_limit)", f"{db.get('best_claims_per_s')} claims/s at "
                                          f"{db.get('best_connections')} connections"),
        ("pipeline holds/s as a fraction of it", fraction),
        ("seats sold twice", result["seats_sold_twice"]),
        ("audit", "clean" if result["audit"]["clean"] else
         f"PROBLEMS: {json.dumps(result['audit']['problems'])[:400]}"),
    ]
    rows += [(f"CPU {g}", f"{v['cores']} cores ({v['cpu_s']} s)") for g, v in cpu.items()]
    per_hold = result["cpu_ms_per_granted_hold"] = cpu_per_granted_hold(result, cpu)
    if per_hold:
        rows.append(("CPU per granted hold (ms)",
                     ", ".join(f"{g} {v}" for g, v in per_hold.items())))
    if "server_cpu_ms_per_order" in result:
        rows.append(("server CPU per order (all groups but the load generator)",
                     f"{result['server_cpu_ms_per_order']} ms over {result['orders_in_window']} "
                     "orders"))
    dash = result.get("dashboards")
    if dash:
        gap, lag = dash["gap_between_messages"], dash["lag_at_to_receipt"]
        rows += [
            ("dashboard watchers joined / asked", f"{dash['joined']} / {dash['watchers']}"),
            ("dashboard messages per watcher per s", dash["messages_per_watcher_per_s"]),
            ("dashboard gap between messages p50 / p99", f"{gap['p50_ms']} / {gap['p99_ms']} ms"),
            ("dashboard figures' age at receipt p50 / p99", f"{lag['p50_ms']} / {lag['p99_ms']} ms"),
            ("dashboard computations / s (all web)", dash["computations_per_s"]),
            ("dashboard compute: mean wall time", f"{dash['compute_wall_ms_mean']} ms"),
        ]
    targets = targets(result) + [
        ("zero seats sold twice", result["seats_sold_twice"] == 0, result["seats_sold_twice"]),
        ("zero lost requests", result["unanswered"] == 0, result["unanswered"]),
        ("audit clean", result["audit"]["clean"], result["audit"]["exit_code"]),
    ]
    result["targets"] = [{"target": t, "met": bool(m), "measured": v} for t, m, v in targets]
    print()
    print(f"== {title} ==")
    for k, v in rows:
        print(f"  {k:<52} {v}")
    print("  targets:")
    for t, m, v in targets:
        print(f"    [{'met' if m else 'MISSED'}] {t} (measured {v})")
    load = result.get("machine_before", {})
    md = [("Command", f"```\n{command}\n```"),
          ("Machine", f"{load.get('cores')} cores; load average before the run "
                      f"{load.get('loadavg_1m')} (1 min) / {load.get('loadavg_5m')} (5 min); "
                      f"busiest processes then: {', '.join(load.get('top', [])[:5])}. "
                      "Everything (MariaDB, Redis, nginx, web, workers, load generator) runs on "
                      "this machine; MariaDB and Redis are shared with whatever else runs."),
          ("Code measured", f"commit {result['code']['commit']}; uncommitted changes in "
                            f"booking/ and workers/: "
                            f"{result['code']['uncommitted_product_changes'] or 'none'}"),
          ("Environment overrides", ", ".join(f"`{k}={v}`" for k, v in
                                              result.get("env_overrides", {}).items()) or "none"),
          ("Figures", rows),
          ("Targets", [(t, f"{'met' if m else '**missed**'} ({v})") for t, m, v in targets]),
          ("Server metrics (deltas over the run)", f"```\n{json.dumps(srv, indent=1)}\n```"),
          ("Notes", "\n".join(f"- {n}" for n in result.get("notes", [])) or "none"),
          ("How to read", "See docs/BENCHMARKS.md. Client latencies are from the socket emit to "
                          "the result event; the server metric is from the web process's "
                          "receipt to the worker's send. Lag is receipt time minus the "
                          "message's committed_at (includes the coalescing interval) or "
                          "sent_at. CPU 'cores' is CPU seconds per wall second over the sale "
                          "window (2.0 = the whole machine).")]
    if priv:
        try:
            plot(out_dir / "plot.png", priv["end"] - priv["t0"], priv["series"],
                     priv["hist_series"], priv["cpu_samples"], priv["t0"],
                     [("hold_requested", "hold requests"), ("hold_ok", "holds granted"),
                      ("hold_fail_seat_unavailable", "holds refused (taken)"),
                      ("shed", "shed (busy)"), ("pay_ok", "payments ok")],
                     title, t_start=priv.get("start_s", 0))
            md.insert(4, ("Plot", "![throughput, latency and CPU over time](plot.png)"))
        except Exception as err:
            md.insert(4, ("Plot", f"not drawn: {err!r}"))
    write_markdown(out_dir / "report.md", title, md)
    result.pop("timeline_full", None)
    dump(out_dir / "report.json", result)
    print(f"  written: {out_dir / 'report.json'}, report.md, plot.png")
    return result


def passed(result):
    """A sale passes when the audit is clean, nothing accepted went unanswered, nothing sold twice."""
    return (result["audit"]["clean"] and result["unanswered"] == 0
            and result["seats_sold_twice"] == 0)
