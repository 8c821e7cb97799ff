"""Peak memory of read_all_pairs, measured as the RSS high-water mark of a fresh subprocess.

Documented bound: beside its [B, P] float32 output, read_all_pairs holds the cached pair sizes
(P int32) and per-thread buffers of O(d + m + active entries); it never forms the [P, d] read-out
matrix (here 1.4 GB dense, ~110 MB as torch CSR). The test allows the output + pair sizes +
48 MB of slack (allocator, first-touch of torch kernels).
"""

import json
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import json, re, torch
    from supcomp.uand import UAnd
    def hwm():
        return int(re.search(r"VmHWM:\\s+(\\d+)", open("/proc/self/status").read()).group(1)) * 1024
    m, d, p, B, s = 600, 2000, 0.1, 64, 6
    u = UAnd(m, d, p, seed=0)
    idx = torch.argsort(torch.rand(B, m), dim=1)[:, :s].contiguous()
    a = u.forward(idx)
    u.read(a, torch.tensor([[0, 1]]))  # warm up the kernels
    out = torch.empty(B, u.n_pairs)
    out.zero_()  # touch the output before the baseline
    open("/proc/self/clear_refs", "w").write("5")  # reset the high-water mark to the current RSS
    base = hwm()
    u.read_all_pairs(a, out=out)
    counts = u.pair_counts()
    print(json.dumps(dict(extra=hwm() - base, out=out.numel() * 4, counts=counts.numel() * 4,
                          dense_R=u.n_pairs * d * 4)))
""")


def test_read_all_pairs_peak_memory_is_bounded():
    res = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True)
    r = json.loads(res.stdout.strip().splitlines()[-1])
    # the output is preallocated: extra memory is the pair sizes and buffers only
    assert r["extra"] <= r["counts"] + 48 * 2**20, r
    assert r["extra"] < r["dense_R"] / 10, r
