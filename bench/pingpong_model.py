#!/usr/bin/env python3
# Discrete-event model of the ping-pong schedule (decode_piece_pingpong.cuh), one CTA.
# Tensor pipe: one FIFO server shared by both warpgroups (wgmma groups run in issue order).
# Each warpgroup is a generator that yields its local time before every shared action, and the
# scheduler always resumes the one that is furthest behind, so actions happen in time order.
def run(n, S, PVr, PVs, SM, L, RES, SYNC=30):
    tfree = [0.0]
    def tensor(issue, dur):
        start = max(issue, tfree[0]); tfree[0] = start + dur; return tfree[0]
    P, FREE = {}, {}
    def wg(w):
        c = yield L
        if w < n:
            c = tensor(c, S)
        if w == 1 and n > 0:
            while 0 not in P: c = yield c + 1
            c = yield max(c, P[0]) + SYNC + RES
            c = tensor(c, PVs); FREE[0] = c
        t = w
        while t < n:
            c = yield c + SM
            P[t] = c
            c = yield c + RES
            c = tensor(c, PVr)
            if t + 2 < n:
                while t not in FREE: c = yield c + 1
                c = max(c, FREE[t]) + SYNC
                load_done = c + L
            if t + 1 < n:
                while t + 1 not in P: c = yield c + 1
                c = yield max(c, P[t + 1]) + SYNC + RES
                c = tensor(c, PVs); FREE[t + 1] = c
            if t + 2 < n:
                c = yield max(c, load_done) + SYNC
                c = tensor(c, S)
            t += 2
        yield ('done', c)
    g = [wg(0), wg(1)]; cur = [next(g[0]), next(g[1])]; done = [None, None]
    while None in done:
        i = min((k for k in range(2) if done[k] is None), key=lambda k: -1 if isinstance(cur[k], tuple) else cur[k])
        r = cur[i]
        if isinstance(r, tuple): done[i] = r[1]; continue
        cur[i] = g[i].send(r)
    return max(done)
n = 64
flop_tile = 2*64*64*576 + 2*64*64*512
print("S at 85% of peak (N=64, shared-memory limited), PV at 90-95%; per-SM peak 4096 FLOP/clk")
for L in (800, 1200, 1600, 2000, 2500):
    for SM in (500, 800):
        S = 36*32/0.85; PVr = 4*128/0.95; PVs = 4*128/0.9
        T = run(n, S, PVr, PVs, SM, L, RES=70)
        per = T / n
        print(f"L={L:5d} softmax={SM}: {per:5.0f} cyc/tile, tensor busy {n*(S+PVr+PVs)/T*100:3.0f}%, "
              f"{flop_tile/per*132*1.755e9/1e12:4.0f} TFLOP/s at 1.755 GHz")
