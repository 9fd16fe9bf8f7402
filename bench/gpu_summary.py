"""Summarise a gpu_check.sh results folder into DIR/summary.md and print it.

Usage: python bench/gpu_summary.py DIR

Reads DIR/profile.json (numpy, cpu, cuda at the MLP shapes and small squares),
DIR/profile-4096.json (numpy and cuda at 4096^2) and DIR/cublas.json (if CuPy
ran), and states the two targets of the CUDA issue: float32 matmul at 4096^2
at least half of cuBLAS, and the MNIST training step faster on cuda than on cpu.
Missing files are reported as missing, never guessed.
"""

import json
import os
import sys


def _load(path):
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except FileNotFoundError:
        return None


def _records(profile):
    return profile["records"] if profile else []


def _find(records, kernel, backend, case=None):
    for r in records:
        if r["kernel"] == kernel and r["backend"] == backend and (case is None or r["case"] == case):
            return r
    return None


def _ms(t):
    return "n/a" if t is None else f"{t * 1e3:.3f} ms"


def summarise(folder):
    prof = _load(os.path.join(folder, "profile.json"))
    big = _load(os.path.join(folder, "profile-4096.json"))
    cublas = _load(os.path.join(folder, "cublas.json"))
    lines = ["# fastinit GPU check", ""]
    info = (prof or big or {}).get("info", {})
    lines.append(
        f"GPU: {info.get('gpu', 'unknown')}; numba {info.get('numba', '?')}; python {info.get('python', '?')}"
    )
    lines.append("")
    lines.append("## Targets")
    # target 1: matmul 4096 vs cuBLAS
    row = None
    if cublas:
        row = next((r for r in cublas["rows"] if r["n"] == 4096), None)
    if row:
        ok = row["fraction_of_cublas"] >= 0.5
        lines.append(
            f"- float32 matmul 4096^2: fastinit {row['fastinit_gflops']:.0f} GFLOP/s, cuBLAS "
            f"{row['cublas_gflops']:.0f} GFLOP/s: {row['fraction_of_cublas']:.2f} of cuBLAS "
            f"(target >= 0.5: {'MET' if ok else 'NOT MET'})"
        )
        tilings = ", ".join(
            f"{k[len('fastinit_gflops_') :]} {v:.0f}"
            for k, v in row.items()
            if k.startswith("fastinit_gflops_")
        )
        lines.append(f"  per tiling (GFLOP/s): {tilings}")
    else:
        r = _find(_records(big), "matmul", "cuda", "4096^2")
        got = f"{r['throughput']:.0f} GFLOP/s" if r else "not measured"
        lines.append(f"- float32 matmul 4096^2: fastinit {got}; cuBLAS not measured (CuPy unavailable)")
    # target 2: training step cuda vs cpu
    recs = _records(prof)
    cpu, gpu = _find(recs, "train_step", "cpu"), _find(recs, "train_step", "cuda")
    if cpu and gpu:
        ok = gpu["time_s"] < cpu["time_s"]
        xfer = gpu.get("time_xfer_s")
        lines.append(
            f"- MNIST training step ({gpu['case']}): cuda {_ms(gpu['time_s'])} resident "
            f"({_ms(xfer)} with the batch copied in and the loss out), cpu {_ms(cpu['time_s'])}: "
            f"{cpu['time_s'] / gpu['time_s']:.2f}x (target cuda faster: {'MET' if ok else 'NOT MET'})"
        )
    else:
        lines.append("- MNIST training step: not measured on both cpu and cuda")
    lines.append("")
    lines.append("## cuda kernels (profile.json, profile-4096.json)")
    lines.append("")
    lines.append("| kernel | case | time | w/ transfers | throughput | vs numpy |")
    lines.append("|---|---|---|---|---|---|")
    for r in _records(prof) + _records(big):
        if r["backend"] != "cuda":
            continue
        sp = r.get("speedup")
        lines.append(
            f"| {r['kernel']} | {r['case']} | {_ms(r['time_s'])} | {_ms(r.get('time_xfer_s'))} | "
            f"{r['throughput']:.3g} {r['unit']} | {'-' if sp is None else f'{sp:.2f}x'} |"
        )
    text = "\n".join(lines) + "\n"
    with open(os.path.join(folder, "summary.md"), "w", encoding="utf-8") as fh:
        fh.write(text)
    return text


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    print(summarise(sys.argv[1]))
