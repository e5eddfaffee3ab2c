"""Prometheus scrapes of the web processes' /metrics and the maths on them (sums, deltas, histogram quantiles)."""
from collections import defaultdict


def scrape(url, timeout=10):
    """{(name, ((label, value), ...)): value} of one /metrics scrape, or None."""
    import requests
    from prometheus_client.parser import text_string_to_metric_families
    try:
        answer = requests.get(url + "/metrics", timeout=timeout)
    except Exception:
        return None
    if answer.status_code != 200:
        return None
    text = answer.text
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def scrape_any(urls, timeout=10):
    """The first web process of urls that answers /metrics (each shows the whole machine's
    sum through the shared multiprocess folder), or None."""
    for url in urls:
        sample = scrape(url, timeout=timeout)
        if sample:
            return sample
    return None


def metric_sum(sample, name, **labels):
    if not sample:
        return 0.0
    return sum(v for (n, lab), v in sample.items() if n == name
               and all(dict(lab).get(k) == val for k, val in labels.items()))


def metric_delta(before, after, name, **labels):
    return metric_sum(after, name, **labels) - metric_sum(before, name, **labels)


def histogram_delta(before, after, name, **labels):
    """[(le, count)] of a histogram between two scrapes (cumulative buckets)."""
    buckets = defaultdict(float)
    for sample, sign in ((after, 1), (before, -1)):
        for (n, lab), v in (sample or {}).items():
            d = dict(lab)
            if n == f"{name}_bucket" and all(d.get(k) == val for k, val in labels.items()):
                buckets[float(d["le"])] += sign * v
    return sorted(buckets.items())


def histogram_quantile(buckets, q):
    """Prometheus-style linear interpolation inside the bucket holding quantile q."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    total = buckets[-1][1]
    rank = q * total
    prev_le, prev_c = 0.0, 0.0
    for le, c in buckets:
        if c >= rank:
            if le == float("inf"):
                return prev_le
            span = c - prev_c
            return prev_le + (le - prev_le) * ((rank - prev_c) / span if span else 0)
        prev_le, prev_c = le, c
    return prev_le


def histogram_mean_buckets(buckets):
    """{le: count in that bucket} (not cumulative)."""
    out, prev = {}, 0.0
    for le, c in buckets:
        out[le] = c - prev
        prev = c
    return out
