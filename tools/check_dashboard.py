#!/usr/bin/env python3
"""check_dashboard.py: the Grafana dashboard and the Prometheus alert rules
of examples/ query only metrics that exist.

The metric names and label names are those of the tables of
docs/METRICS.md (the one place they are written down). Checked:
  - the dashboard is valid JSON with a title, uid, schemaVersion and
    panels; every panel has a unique integer id, a type, a title, a
    gridPos (x, y, w, h; within 24 columns) and, unless it is a row or a
    text panel, targets each with a unique refId and an expr;
  - every metric a PromQL expression (a panel target, a templating query,
    an alert rule) names is in docs/METRICS.md (a histogram's _bucket,
    _sum and _count included), and every label it matches or groups on
    is one of the documented labels (or a scrape's job / instance);
  - the dashboard and the rules cover what operators asked for (REQUIRED
    below); every alert has a severity label and a summary.

  tools/check_dashboard.py [--root DIR]

Exit status 0 when all holds, 1 when not, 2 when a file cannot be read.
"""
import argparse
import json
import os
import re
import sys

import yaml

# What each file must query, at least once.
REQUIRED_DASHBOARD = [
    "luacached_hits_total", "luacached_misses_total",
    "luacached_fetch_duration_seconds_bucket", "luacached_fetches_total",
    "luacached_stale_served_total", "luacached_backend_up",
    "luacached_policy_reloads_total", "luacached_policy_loaded",
    "luacached_lock_takeovers_total",
    "luacached_command_duration_seconds_bucket", "luacached_redis_rtt_seconds_bucket",
    "luacached_origin_responses_total", "luacached_l1_ns_entries",
]
REQUIRED_ALERTS = [
    "luacached_backend_up", "luacached_backend_subscribed", "luacached_fetches_total",
    "luacached_policy_loaded", "luacached_policy_reloads_total", "luacached_hits_total",
    "luacached_lock_takeovers_total",
]
SCRAPE_LABELS = {"job", "instance"}
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool",
                "and", "or", "unless", "offset", "inf", "nan", "atan2"}
PANELS_WITHOUT_TARGETS = {"row", "text", "news", "dashlist"}

errors = []


def err(where, msg):
    errors.append(f"{where}: {msg}")


def read(path):
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError as e:
        print(f"check_dashboard: cannot read {path}: {e.strerror}", file=sys.stderr)
        sys.exit(2)


def documented(metrics_md):
    """(metric names, label names) of the tables of docs/METRICS.md."""
    names, labels = set(), set(SCRAPE_LABELS)
    for line in metrics_md.splitlines():
        if not line.startswith("| `luacached_"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        name = cells[0].strip("`")
        names.add(name)
        if len(cells) >= 3 and cells[1] == "histogram":
            names.update(name + s for s in ("_bucket", "_sum", "_count"))
            labels.add("le")
        if len(cells) == 4:  # per namespace: | metric | type | extra label | meaning |
            labels.add("ns")
            labels.update(re.findall(r"`([a-z_]+)` =", cells[2]))
        labels.update(re.findall(r"label `([a-z_]+)`", line))
    if not names:
        print("check_dashboard: docs/METRICS.md lists no luacached_ metric", file=sys.stderr)
        sys.exit(2)
    return names, labels


def promql_names(expr):
    """(metrics, labels) an expression names. A small scanner, not a
    parser: enough for the queries we write, and strict where unsure."""
    s = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string contents
    s = re.sub(r"\$\{?\w+\}?", "", s)  # dashboard variables ($ns, ${datasource})
    labels = set(re.findall(r"([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)", "".join(re.findall(r"\{[^}]*\}", s))))
    for grp in re.findall(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)", s):
        labels.update(x.strip() for x in grp.split(",") if x.strip())
    s = re.sub(r"\{[^}]*\}", " ", s)  # matchers
    s = re.sub(r"\[[^\]]*\]", " ", s)  # ranges
    s = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", s)
    metrics = set()
    for m in re.finditer(r"(?<![\w.])([a-zA-Z_:][\w:]*)(\s*\()?", s):
        word, call = m.group(1), m.group(2)
        if call or word.lower() in PROMQL_WORDS:
            continue
        metrics.add(word)
    return metrics, labels


def check_expr(where, expr, names, labels, seen):
    if not isinstance(expr, str) or not expr.strip():
        err(where, "empty expression")
        return
    metrics, used_labels = promql_names(expr)
    if not metrics:
        err(where, f"names no metric: {expr}")
    for m in sorted(metrics - names):
        err(where, f"metric '{m}' is not in docs/METRICS.md")
    for lab in sorted(used_labels - labels):
        err(where, f"label '{lab}' is not a label of docs/METRICS.md")
    seen.update(metrics)


def check_dashboard(path, names, labels):
    try:
        dash = json.loads(read(path))
    except json.JSONDecodeError as e:
        err(path, f"not valid JSON: {e}")
        return
    seen = set()
    for key, typ in (("title", str), ("uid", str), ("schemaVersion", int), ("panels", list)):
        if not isinstance(dash.get(key), typ) or dash.get(key) in ("", []):
            err(path, f"'{key}' missing or not a {typ.__name__}")
    ids = set()
    for i, p in enumerate(dash.get("panels") or []):
        where = f"{path}: panel {i + 1} ({p.get('title', '?')!r})"
        pid = p.get("id")
        if not isinstance(pid, int) or pid in ids:
            err(where, f"id {pid!r} missing, not an integer, or not unique")
        ids.add(pid)
        for key in ("type", "title"):
            if not isinstance(p.get(key), str) or not p.get(key):
                err(where, f"no '{key}'")
        g = p.get("gridPos")
        if not isinstance(g, dict) or not all(isinstance(g.get(k), int) for k in "xywh"):
            err(where, "gridPos needs integer x, y, w, h")
        elif g["x"] < 0 or g["w"] <= 0 or g["h"] <= 0 or g["x"] + g["w"] > 24:
            err(where, f"gridPos {g} outside the 24 columns")
        if p.get("type") in PANELS_WITHOUT_TARGETS:
            continue
        if "datasource" not in p:
            err(where, "no datasource")
        targets = p.get("targets")
        if not isinstance(targets, list) or not targets:
            err(where, "no targets")
            continue
        refs = set()
        for t in targets:
            ref = t.get("refId")
            if not ref or ref in refs:
                err(where, f"refId {ref!r} missing or not unique")
            refs.add(ref)
            check_expr(f"{where} target {ref}", t.get("expr"), names, labels, seen)
    for v in (dash.get("templating") or {}).get("list", []):
        q = v.get("query")
        if v.get("type") == "query":
            if isinstance(q, dict):
                q = q.get("query")
            inner = re.fullmatch(r"\s*label_values\((.*),\s*(\w+)\)\s*", q or "")
            if not inner:
                err(f"{path}: variable {v.get('name')}", f"expected label_values(QUERY, LABEL), got {q!r}")
                continue
            check_expr(f"{path}: variable {v.get('name')}", inner.group(1), names, labels, seen)
            if inner.group(2) not in labels:
                err(f"{path}: variable {v.get('name')}", f"label '{inner.group(2)}' is not documented")
    for m in REQUIRED_DASHBOARD:
        if m not in seen:
            err(path, f"no panel queries {m}")


def check_alerts(path, names, labels):
    try:
        doc = yaml.safe_load(read(path))
    except yaml.YAMLError as e:
        err(path, f"not valid YAML: {e}")
        return
    seen = set()
    rules = [r for g in (doc or {}).get("groups", []) for r in g.get("rules", [])]
    if not rules:
        err(path, "no rules")
    for r in rules:
        name = r.get("alert") or r.get("record") or "?"
        where = f"{path}: {name}"
        check_expr(where, r.get("expr"), names, labels, seen)
        if "alert" in r:
            if not (r.get("labels") or {}).get("severity"):
                err(where, "no severity label")
            if not (r.get("annotations") or {}).get("summary"):
                err(where, "no summary annotation")
    for m in REQUIRED_ALERTS:
        if m not in seen:
            err(path, f"no rule queries {m}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    ap.add_argument("--dashboard", default="examples/grafana-dashboard.json")
    ap.add_argument("--alerts", default="examples/prometheus-alerts.yml")
    a = ap.parse_args()
    os.chdir(a.root)
    names, labels = documented(read("docs/METRICS.md"))
    check_dashboard(a.dashboard, names, labels)
    check_alerts(a.alerts, names, labels)
    for e in errors:
        print(f"check_dashboard: {e}", file=sys.stderr)
    if errors:
        return 1
    print(f"check_dashboard: {a.dashboard} and {a.alerts} OK ({len(names)} documented metric names)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
