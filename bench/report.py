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
