#!/usr/bin/env python3
"""check_layers.py: a lower layer of src/ may not include a higher one.

The layers and the allowed exceptions are the two tables of docs/LAYERS.md
(the one place they are written down). Every `#include "x.h"` of
src/*.c and src/*.h is checked against them:
  - a file may include headers of its own layer and of lower layers;
  - an upward include fails unless the exact pair is an exception;
  - an exception that no longer occurs fails too, so the list stays true;
  - a file of src/ in no layer fails (new files must be placed);
  - the modules of one layer may not include each other in a cycle (a
    module is a file name without .c/.h; A -> B when A.c or A.h includes
    B.h), unless the cycle is listed under "Allowed cycles"; a listed
    cycle that no longer occurs fails too.

  tools/check_layers.py [--root DIR] [--graph]

Exit status 0 when the tree obeys the table, 1 when it does not, 2 when
the table cannot be read.
"""
import argparse
import fnmatch
import os
import re
import sys

INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"')


def die(msg):
    print(f"check_layers: {msg}", file=sys.stderr)
    sys.exit(2)


def table_rows(lines, heading, optional=False):
    """The cells of the rows of the first table after `## heading`."""
    rows, in_section, in_table = [], False, False
    for no, line in enumerate(lines, 1):
        if line.startswith("## "):
            if in_section:
                break
            in_section = line[3:].strip().lower() == heading
            continue
        if not in_section:
            continue
        if line.startswith("|"):
            in_table = True
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if all(re.fullmatch(r":?-+:?", c) for c in cells):
                continue  # the separator row
            rows.append((no, cells))
        elif in_table:
            break
    if not rows:
        if optional:
            return []
        die(f"docs/LAYERS.md has no '## {heading.title()}' table")
    return rows[1:]  # without the header row


def read_table(path):
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as e:
        die(f"cannot read {path}: {e.strerror}")
    layers = []  # (rank, name, [module patterns])
    for no, cells in table_rows(lines, "table"):
        if len(cells) != 3 or not cells[0].isdigit():
            die(f"{path}:{no}: a layer row is | rank | layer | modules |")
        mods = [m.strip().strip("`") for m in cells[2].split(",") if m.strip()]
        layers.append((int(cells[0]), cells[1], mods))
    exceptions = {}  # (file, header) -> table line
    for no, cells in table_rows(lines, "exceptions"):
        if len(cells) != 4 or not all(cells):
            die(f"{path}:{no}: an exception row is | file | includes | why | removed by |")
        exceptions[(cells[0].strip("`"), cells[1].strip("`"))] = no
    allowed = {}  # frozenset of modules -> table line
    for no, cells in table_rows(lines, "allowed cycles", optional=True):
        if len(cells) != 3 or not all(cells):
            die(f"{path}:{no}: an allowed cycle row is | cycle | why | removed by |")
        mods = [m.strip().strip("`") for m in re.split(r"->|→", cells[0]) if m.strip()]
        if len(set(mods)) < 2:
            die(f"{path}:{no}: a cycle names two modules or more: a -> b -> a")
        allowed[frozenset(mods)] = no
    return layers, exceptions, allowed


def layer_of(name, layers):
    """(rank, layer) of a file name such as cache_int.h, or None."""
    module = os.path.splitext(name)[0]
    for rank, layer, mods in layers:
        for m in mods:
            if fnmatch.fnmatchcase(module, m):
                return rank, layer
    return None


def tangles(edges):
    """The strongly connected components of more than one module (Tarjan,
    iterative), each as a sorted list: every cycle lies within one."""
    index, low, on_stack, stack, out = {}, {}, set(), [], []
    counter = 0
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges.get(root, ()))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, it = work[-1]
            nxt = next(it, None)
            if nxt is not None:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(edges.get(nxt, ())))))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    m = stack.pop()
                    on_stack.discard(m)
                    comp.append(m)
                    if m == node:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def one_cycle(edges, comp):
    """A shortest cycle through the first module of comp, within comp, as
    [a, b, ..., a]."""
    start, members = comp[0], set(comp)
    prev, queue = {start: None}, [start]
    for node in queue:  # breadth-first, so the cycle shown is a short one
        for nxt in sorted(edges.get(node, ())):
            if nxt == start:
                path = [node]
                while prev[path[-1]] is not None:
                    path.append(prev[path[-1]])
                return path[::-1] + [start]
            if nxt in members and nxt not in prev:
                prev[nxt] = node
                queue.append(nxt)
    return comp + [start]  # not reached: comp is strongly connected


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default=os.path.join(os.path.dirname(__file__), ".."))
    ap.add_argument("--graph", action="store_true", help="print the include graph with layers")
    args = ap.parse_args()
    src = os.path.join(args.root, "src")
    table = os.path.join(args.root, "docs", "LAYERS.md")
    layers, exceptions, allowed = read_table(table)

    files = sorted(f for f in os.listdir(src) if f.endswith((".c", ".h")))
    errors, used = [], set()
    edges = {}  # module -> modules of the same layer it includes
    for name in files:
        mine = layer_of(name, layers)
        if mine is None:
            errors.append(f"src/{name}: in no layer: add its module to docs/LAYERS.md")
            continue
        with open(os.path.join(src, name), encoding="utf-8", errors="replace") as f:
            incs = [(no, m.group(1)) for no, line in enumerate(f, 1) if (m := INCLUDE.match(line))]
        if args.graph:
            shown = ", ".join(
                f"{h} ({layer_of(h, layers)[1]})" if layer_of(h, layers) else h for _, h in incs
            )
            print(f"{name} [{mine[1]}]: {shown}")
        for no, header in incs:
            if not os.path.exists(os.path.join(src, header)):
                continue  # not ours (none today); the compiler finds it or fails
            theirs = layer_of(header, layers)
            here, there = os.path.splitext(name)[0], os.path.splitext(header)[0]
            if theirs is not None and theirs[0] == mine[0] and here != there:
                edges.setdefault(here, set()).add(there)
            if theirs is None or theirs[0] <= mine[0]:
                continue  # unplaced headers are reported as files of their own
            if (name, header) in exceptions:
                used.add((name, header))
                continue
            errors.append(
                f"src/{name}:{no}: {name} (layer {mine[0]} {mine[1]}) includes {header} "
                f"(layer {theirs[0]} {theirs[1]}): a lower layer may not include a higher one"
            )
    for pair, no in sorted(exceptions.items(), key=lambda kv: kv[1]):
        if pair not in used:
            errors.append(
                f"docs/LAYERS.md:{no}: exception {pair[0]} -> {pair[1]} is not (or no longer) "
                "an upward include: remove it from the table"
            )
    cycles_used = set()
    for comp in tangles(edges):
        key = frozenset(comp)
        if key in allowed:
            cycles_used.add(key)
            continue
        shown = " -> ".join(one_cycle(edges, comp))
        errors.append(
            f"include cycle in layer {layer_of(comp[0] + '.h', layers)[1]}: {shown} "
            f"(modules that reach each other: {', '.join(comp)}); break it, or list it "
            "under 'Allowed cycles' in docs/LAYERS.md"
        )
    for key, no in sorted(allowed.items(), key=lambda kv: kv[1]):
        if key not in cycles_used:
            errors.append(
                f"docs/LAYERS.md:{no}: allowed cycle of {', '.join(sorted(key))} does not (or no "
                "longer) occur as it is written: remove or correct it"
            )
    for e in errors:
        print(e, file=sys.stderr)
    if errors:
        print(f"check_layers: {len(errors)} problem(s); layers in docs/LAYERS.md", file=sys.stderr)
        return 1
    print(
        f"check_layers: {len(files)} files obey docs/LAYERS.md ({len(used)} listed exceptions, "
        f"{len(cycles_used)} allowed cycles)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
