"""Draws every panel of a Grafana dashboard JSON from a Prometheus over a time range (SVG).

Each panel's queries run as range queries (`$__rate_interval` becomes 30s) against the given
Prometheus; one subplot per panel, one line per returned series, the panel's unit on the y
axis. Used by scripts/dashboard-snapshot.sh to picture dashboards/endpoint-picker.json with
real data.
"""

import argparse
import json
import math
import urllib.parse
import urllib.request

import matplotlib

matplotlib.use("svg")
import matplotlib.pyplot as plt  # noqa: E402

UNIT_LABEL = {"reqps": "req/s", "s": "seconds", "percentunit": "fraction", "none": ""}


def query_range(base, expr, start, end, step):
    params = urllib.parse.urlencode(
        {"query": expr, "start": start, "end": end, "step": step}
    )
    with urllib.request.urlopen(f"{base}/api/v1/query_range?{params}", timeout=30) as r:
        body = json.load(r)
    if body.get("status") != "success":
        raise RuntimeError(f"{expr}: {body}")
    return body["data"]["result"]


def query_instant(base, expr, at):
    params = urllib.parse.urlencode({"query": expr, "time": at})
    with urllib.request.urlopen(f"{base}/api/v1/query?{params}", timeout=30) as r:
        body = json.load(r)
    if body.get("status") != "success":
        raise RuntimeError(f"{expr}: {body}")
    return body["data"]["result"]


def legend(metric):
    labels = {k: v for k, v in metric.items() if k != "__name__"}
    text = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
    return text[:60] or metric.get("__name__", "value")


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--prometheus", required=True)
    ap.add_argument("--dashboard", required=True)
    ap.add_argument("--start", type=float, required=True)
    ap.add_argument("--end", type=float, required=True)
    ap.add_argument("--step", type=float, default=2.0)
    ap.add_argument("--out", required=True)
    ap.add_argument("--png", help="also write a PNG here (for a quick look)")
    ap.add_argument("--check", help="a file of PromQL expressions (one per line, # comments) that must each return series at --end")
    args = ap.parse_args()

    with open(args.dashboard) as f:
        dash = json.load(f)
    panels = dash["panels"]
    cols = 2
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(14, 2.8 * rows), squeeze=False)
    empty = []
    for i, panel in enumerate(panels):
        ax = axes[i // cols][i % cols]
        unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit", "none")
        drawn = 0
        for target in panel.get("targets", []):
            expr = target["expr"].replace("$__rate_interval", "30s")
            for series in query_range(args.prometheus, expr, args.start, args.end, args.step):
                t = [float(v[0]) - args.start for v in series["values"]]
                y = [float(v[1]) for v in series["values"]]
                label = target.get("legendFormat") or legend(series["metric"])
                ax.plot(t, y, linewidth=1, label=label)
                drawn += 1
        if drawn == 0:
            empty.append(panel["title"])
        ax.set_title(panel["title"], fontsize=9)
        ax.set_ylabel(UNIT_LABEL.get(unit, unit), fontsize=8)
        ax.tick_params(labelsize=7)
        if 0 < drawn <= 6:
            ax.legend(fontsize=6, loc="upper left")
    for j in range(len(panels), rows * cols):
        axes[j // cols][j % cols].axis("off")
    fig.suptitle(
        f"{dash['title']}: real Prometheus data, {args.end - args.start:.0f} s of load "
        "(x axis: seconds since the start)",
        fontsize=11,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.98))
    fig.savefig(args.out)
    if args.png:
        fig.savefig(args.png, dpi=60)
    print(f"wrote {args.out} ({len(panels)} panels)")
    failures = []
    if empty:
        failures.append(f"panels without data: {empty}")
    if args.check:
        with open(args.check) as f:
            exprs = [l.strip() for l in f if l.strip() and not l.startswith("#")]
        missing = [e for e in exprs if not query_instant(args.prometheus, e.replace("$__rate_interval", "30s"), args.end)]
        print(f"{len(exprs) - len(missing)} of {len(exprs)} expressions of {args.check} return series")
        if missing:
            failures.append(f"no series for: {missing}")
    if failures:
        raise SystemExit("; ".join(failures))


if __name__ == "__main__":
    main()
