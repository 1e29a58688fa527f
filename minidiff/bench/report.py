"""The benchmark's output: its rows as aligned text tables, and as a JSON list (--json)."""
import json


def _fmt(v, scale=1.0, digits=1):
    return "-" if v is None else f"{v * scale:.{digits}f}"


def _columns(lines):
    """Rows of strings (the first the header) as aligned text: the first column to the left, the rest right."""
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    return "\n".join("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths)))
                     for line in lines)


def format_table(rows):
    """The rows of run_case (rows.py) as a table, one line per case."""
    head = ("case", "ref ms", "numba ms", "torch ms", "best/torch", "by round", "paired", "GFLOP/s",
            "% GEMM", "paired %", "torch GFLOP/s", "MB minidiff", "MB torch")
    lines = [head]
    for r in rows:
        mem = r["peak_mb"] or {}
        by_round = r.get("ratio_by_round") or []
        spread = f"{min(by_round):.2f}-{max(by_round):.2f}" if len(by_round) > 1 else "-"
        lines.append((r["case"], _fmt(r["minidiff_reference_s"], 1e3), _fmt(r["minidiff_kernels_s"], 1e3),
                      _fmt(r["torch_s"], 1e3), _fmt(r["ratio_vs_torch"], digits=2), spread,
                      _fmt(r.get("paired_ratio_vs_torch"), digits=2), _fmt(r["gflops"]),
                      _fmt(r.get("gemm_fraction"), 100), _fmt(r.get("paired_gemm_fraction"), 100),
                      _fmt(r["torch_gflops"]), _fmt(mem.get("minidiff")), _fmt(mem.get("torch"))))
    return _columns(lines)


def format_first_call_table(rows):
    """--device cuda: each case's first call per path against its steady median, and Numba's compile time."""
    head = ("case (first call)", "numba ms", "ref ms", "torch ms", "numba compile ms", "numba steady ms")
    lines = [head]
    for r in rows:
        first = r["first_call_s"]
        lines.append((r["case"], _fmt(first.get("minidiff_kernels"), 1e3), _fmt(first.get("minidiff_reference"), 1e3),
                      _fmt(first.get("torch"), 1e3), _fmt(r["numba_compile_s"], 1e3),
                      _fmt(r["minidiff_kernels_s"], 1e3, 2)))
    return _columns(lines)


def format_conv_shape_table(rows, batch):
    """The rows of conv_shape_rows (convs.py) as a table, with a last line: all convs x their calls."""
    head = ("conv (U-Net forward)", "calls", "ours ms", "torch ms", "ours/torch", "paired",
            "GFLOP/s", "torch GFLOP/s")
    lines = [head]
    for r in rows:
        lines.append((r["conv"], str(r["calls_per_forward"]), _fmt(r["minidiff_s"], 1e3, 2), _fmt(r["torch_s"], 1e3, 2),
                      _fmt(r["ratio_vs_torch"], digits=2), _fmt(r["paired_ratio"], digits=2), _fmt(r["gflops"], digits=0),
                      _fmt(r["torch_gflops"], digits=0)))
    ours = sum(r["calls_per_forward"] * r["minidiff_s"] for r in rows)
    have_torch = all(r["torch_s"] is not None for r in rows)
    theirs = sum(r["calls_per_forward"] * r["torch_s"] for r in rows) if have_torch else None
    lines.append((f"all, x calls (batch {batch})", str(sum(r["calls_per_forward"] for r in rows)), _fmt(ours, 1e3, 1),
                  _fmt(theirs, 1e3, 1), _fmt(None if theirs is None else ours / theirs, digits=2), "", "", ""))
    return _columns(lines)


def write_json(path, rows):
    """--json: the rows as a JSON list (nothing when path is None)."""
    if path:
        with open(path, "w") as f:
            json.dump(rows, f, indent=1)
        print(f"wrote {path}")
