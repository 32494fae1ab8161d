"""Benchmark: encoding a large DataFrame to a JSON response body.

Three encoders of the same frame, interleaved (the order rotates every repeat), medians reported:

- **ours**: ``livepandas_ipython.jsonutil.dumps({"result": df})``: the complete body the server
  sends (column-oriented ``{"columns", "index", "data"}``, index included);
- **orjson-columns**: ``orjson.dumps([df[c].to_numpy() for c in df], option=OPT_SERIALIZE_NUMPY)``:
  the floor: orjson over the bare column arrays (string columns as ``.tolist()``, which orjson
  needs), no index, no wrapper;
- **to_json**: ``df.to_json(orient="records")``: what pandas users reach for.

Frames: ``numeric`` has 4 float64 random columns + 1 int64; ``strings`` adds a string column.

    python benchmarks/bench_dataframe.py               # 1,000,000 rows, 7 repeats
    python benchmarks/bench_dataframe.py --quick       # 100,000 rows, 3 repeats
    python benchmarks/bench_dataframe.py --rows 2000000 --repeats 9 --json benchmarks/results/df.json
"""

import argparse
import datetime
import gc
import json
import os
import platform
import statistics
import sys
import time

import numpy as np
import orjson
import pandas as pd

import livepandas_ipython
from livepandas_ipython import jsonutil

TARGET = 2.0  # ours must take at most this many times orjson-columns (numeric frame)


def make_frame(rows, strings, seed=0):
    rng = np.random.default_rng(seed)
    data = {f"f{i}": rng.standard_normal(rows) for i in range(4)}
    data["n"] = rng.integers(0, 1_000_000_000, rows, dtype=np.int64)
    if strings:
        words = np.array(["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"], dtype=object)
        suffix = pd.Series(rng.integers(0, 1000, rows)).astype(str).to_numpy(dtype=object)
        data["s"] = words[rng.integers(0, len(words), rows)] + suffix
    return pd.DataFrame(data)


def enc_ours(df):
    return jsonutil.dumps({"result": df})


def enc_orjson_columns(df):
    cols = []
    for c in df:
        s = df[c]
        cols.append(s.to_numpy() if s.dtype.kind in "biuf" else s.tolist())
    return orjson.dumps(cols, option=orjson.OPT_SERIALIZE_NUMPY)


def enc_to_json(df):
    return df.to_json(orient="records")


ENCODERS = {"ours": enc_ours, "orjson-columns": enc_orjson_columns, "to_json": enc_to_json}


def check(df):
    """Our body decodes back to the frame's values (on a slice, to keep it cheap)."""
    head = df.head(1000)
    body = orjson.loads(enc_ours(head))["result"]
    assert body["columns"] == list(head.columns), body["columns"]
    assert body["index"] == list(range(len(head)))
    for i, c in enumerate(head.columns):
        expected = head[c].tolist()
        got = body["data"][i]
        if head[c].dtype.kind == "f":
            assert np.allclose(got, expected), c
        else:
            assert got == expected, c


def bench(df, repeats, encoders):
    times = {name: [] for name in encoders}
    sizes = {}
    names = list(encoders)
    for rep in range(repeats):
        k = rep % len(names)
        for name in names[k:] + names[:k]:  # rotate the order every repeat
            gc.collect()
            t0 = time.perf_counter()
            out = encoders[name](df)
            dt = time.perf_counter() - t0
            times[name].append(dt)
            sizes[name] = len(out)
            del out
    return times, sizes


def git_commit(path):
    """``"<sha>"`` (``"<sha>+dirty"`` with local changes) of the checkout holding *path*, or None."""
    import subprocess

    where = os.path.dirname(os.path.abspath(path))
    try:
        sha = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=where, capture_output=True,
                             text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "."], cwd=where,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return (sha + ("+dirty" if dirty else "")) or None


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=1_000_000, help="rows per frame (default 1,000,000)")
    p.add_argument("--repeats", type=int, default=7, help="interleaved repeats (default 7)")
    p.add_argument("--frames", default="numeric,strings", help="which frames: numeric,strings (default both)")
    p.add_argument("--no-to-json", action="store_true", help="skip df.to_json (the slow one)")
    p.add_argument("--quick", action="store_true", help="smoke run: 100,000 rows, 3 repeats")
    p.add_argument("--json", metavar="PATH", help="write the results as JSON")
    a = p.parse_args(argv)
    if a.quick:
        a.rows, a.repeats = 100_000, 3
    frames = [f for f in a.frames.split(",") if f]
    encoders = dict(ENCODERS)
    if a.no_to_json:
        del encoders["to_json"]
    print(f"benchmarking {livepandas_ipython.__file__} (commit {git_commit(livepandas_ipython.__file__)})", flush=True)
    results = []
    for frame in frames:
        df = make_frame(a.rows, strings=(frame == "strings"))
        check(df)
        for enc in encoders.values():  # warm up (imports, first-touch of the arrays)
            enc(df.head(1000))
        times, sizes = bench(df, a.repeats, encoders)
        row = {"frame": frame, "rows": len(df), "columns": [f"{c}:{df[c].dtype}" for c in df], "encoders": {}}
        for name, ts in times.items():
            m = statistics.median(ts)
            row["encoders"][name] = {
                "median_s": m,
                "min_s": min(ts),
                "max_s": max(ts),
                "times_s": ts,
                "bytes": sizes[name],
                "mb_per_s": sizes[name] / m / 1e6,
            }
            print(f"  {frame:<8} {name:<15} median {m * 1000:9.1f} ms  "
                  f"(min {min(ts) * 1000:.1f}, max {max(ts) * 1000:.1f})  {sizes[name] / 1e6:7.1f} MB", flush=True)
        e = row["encoders"]
        row["ours_over_orjson_columns"] = e["ours"]["median_s"] / e["orjson-columns"]["median_s"]
        if "to_json" in e:
            row["to_json_over_ours"] = e["to_json"]["median_s"] / e["ours"]["median_s"]
        results.append(row)
        del df
        gc.collect()

    meta = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "machine": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "orjson": orjson.__version__,
        "livepandas_ipython": livepandas_ipython.__version__,
        "commit": git_commit(livepandas_ipython.__file__),
        "rows": a.rows,
        "repeats": a.repeats,
        "quick": a.quick,
        "load_average": os.getloadavg()[0],
    }
    lines = ["", f"DataFrame -> JSON body  ({meta['date']}, {meta['cpus']} CPUs, Python {meta['python']}, "
             f"pandas {meta['pandas']}, numpy {meta['numpy']}, orjson {meta['orjson']})",
             f"  livepandas_ipython {meta['livepandas_ipython']} at commit {meta['commit']}; "
             f"{a.rows:,} rows; medians of {a.repeats} interleaved repeats;\n  "
             "numeric = 4 float64 + 1 int64 columns, strings = numeric + 1 string column", ""]
    header = (f"{'frame':<9}{'encoder':<16}{'median ms':>10}{'min ms':>9}{'MB':>8}{'MB/s':>8}")
    lines += [header, "-" * len(header)]
    for row in results:
        for name, r in row["encoders"].items():
            lines.append(f"{row['frame']:<9}{name:<16}{r['median_s'] * 1000:>10.1f}{r['min_s'] * 1000:>9.1f}"
                         f"{r['bytes'] / 1e6:>8.1f}{r['mb_per_s']:>8.0f}")
        extra = f"   to_json/ours {row['to_json_over_ours']:.2f}x" if "to_json_over_ours" in row else ""
        lines.append(f"{'':<9}ratios: ours/orjson-columns {row['ours_over_orjson_columns']:.2f}x{extra}")
        lines.append("")
    lines.append("  ours includes the index (a RangeIndex becomes an int64 array) and the {\"result\": ...} wrapper;")
    lines.append("  orjson-columns is the bare column arrays only.")
    numeric = next((r for r in results if r["frame"] == "numeric"), None)
    if numeric is not None:
        ok = numeric["ours_over_orjson_columns"] <= TARGET
        lines.append("")
        lines.append(f"Target: ours <= {TARGET:.1f}x orjson-columns ({numeric['rows']:,} rows, numeric): "
                     f"{numeric['ours_over_orjson_columns']:.2f}x  {'PASS' if ok else 'FAIL'}")
    print("\n".join(lines), flush=True)
    if a.json:
        os.makedirs(os.path.dirname(os.path.abspath(a.json)), exist_ok=True)
        with open(a.json, "w") as f:
            json.dump({"meta": meta, "results": results}, f, indent=2)
        print(f"wrote {a.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
