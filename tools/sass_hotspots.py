#!/usr/bin/env python3
"""Where a kernel's warps wait, from ncu's per-instruction source page.

    ncu -i REPORT.ncu-rep --page source --csv --print-source sass > sass.csv
    python3 tools/sass_hotspots.py sass.csv [--top N]

Prints the stall reasons over the whole kernel, then the code between consecutive
synchronization points (barriers, wgmma waits, cp.async commits) with the share of stall samples
each segment holds, and the top instructions. In a warp-specialized kernel (setmaxnreg) it also
splits the code at each USETMAXREG, which starts one warp role's code, and prints each role's
share of the samples, its stall reasons and its instructions executed per warp and tile (pass
--tiles, the tiles per warp of the profiled launch). (tools/gpu_check.sh ncu writes these CSV
files.)
"""
import argparse
import csv
import signal

SYNC_OPS = ("BAR.SYNC", "BAR.ARV", "BAR.RED", "WARPGROUP.DEPBAR", "LDGDEPBAR", "DEPBAR", "EXIT")


def main() -> None:
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # quiet under `| head`
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv_file")
    parser.add_argument("--top", type=int, default=8, help="instructions to list")
    parser.add_argument("--tiles", type=float, default=0,
                        help="tiles per warp (executions of a role's loop) for per-tile counts")
    args = parser.parse_args()
    with open(args.csv_file, newline="") as f:
        rows = [r for r in csv.reader(f)]
    header_at = next(i for i, r in enumerate(rows) if r and r[0] == "Address")
    header, data = rows[header_at], [r for r in rows[header_at + 1:] if len(r) == len(rows[header_at])]
    samples = header.index("Warp Stall Sampling (All Samples)")
    executed = header.index("Instructions Executed")
    reasons = [i for i, h in enumerate(header) if h.startswith("stall_") and "Not Issued" not in h]
    value = lambda r, i: float(r[i] or 0)
    total = sum(value(r, samples) for r in data) or 1.0
    by_reason = sorted(((sum(value(r, i) for r in data), header[i][6:]) for i in reasons), reverse=True)
    print(f"{len(data)} instructions, {total:.0f} stall samples; by reason: " +
          ", ".join(f"{name} {100 * n / total:.1f}%" for n, name in by_reason[:8]))
    print("segments ending at a synchronization point (>= 1% of samples):")
    acc, start = 0.0, data[0][0] if data else ""
    for r in data:
        acc += value(r, samples)
        if any(op in r[1] for op in SYNC_OPS):
            if acc / total >= 0.01:
                print(f"  {start[-6:]}..{r[0][-6:]} {100 * acc / total:5.1f}%  -> {r[1].strip()[:48]}"
                      f"  (executed {r[executed]})")
            acc, start = 0.0, r[0]
    roles = [i for i, r in enumerate(data) if "USETMAXREG" in r[1]]
    if roles:
        print("code by warp role (from each USETMAXREG to the next; shared tails go to the last):")
        for n, begin in enumerate(roles):
            end = roles[n + 1] if n + 1 < len(roles) else len(data)
            part = data[begin:end]
            got = sum(value(r, samples) for r in part)
            why = sorted(((sum(value(r, i) for r in part), header[i][6:]) for i in reasons),
                         reverse=True)
            regs = part[0][1].split()[-1]
            per_tile = ""
            if args.tiles > 0:
                warps = max(value(part[0], executed), 1.0)  # the USETMAXREG runs once per warp
                done = sum(value(r, executed) for r in part) / warps / args.tiles
                per_tile = f", {done:.0f} instructions per warp and tile"
            print(f"  {part[0][0][-6:]} {part[0][1].strip()[:40]:40s} {100 * got / total:5.1f}%"
                  f"{per_tile}: " +
                  ", ".join(f"{name} {100 * v / (got or 1):.0f}%" for v, name in why[:6]))
    print("top instructions:")
    for r in sorted(data, key=lambda r: -value(r, samples))[:args.top]:
        top_reason = max(reasons, key=lambda i: value(r, i))
        print(f"  {100 * value(r, samples) / total:5.1f}% {r[0][-6:]} {r[1].strip()[:60]:60s} "
              f"({header[top_reason][6:]})")


if __name__ == "__main__":
    main()
