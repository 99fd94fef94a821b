"""World-model rollout + energy speed on every available backend (JSON on stdout).

The planner's unit of work: N action sequences of H steps rolled out from one latent and scored
against a goal latent. For every N in --samples and H in --horizons (default N = 64, 256, 1024;
H = 5, 8, 10; 256 x 8 is the planner's setting) it reports per backend the median latency of a
call (ms, with p10/p90 over all timed calls), the throughput (samples x steps / s) and the
speed-up over eager PyTorch measured in the same run; plus the latency of encoding one 640x480
RGB-D observation (preprocessing included). Backends: torch eager (baseline), torch.compile,
onnxruntime, TensorRT (reported as skipped, with the reason, where it cannot run).

    python bench/bench_world_model.py [--model models/craik_wm_cpu] [--samples 64,256,1024]
        [--horizons 5,8,10]

Rollout graphs are exported per horizon: horizons missing from --model's export are exported
from its weights into a temporary directory (without --model's weights: an untrained model of the
cpu preset; speed does not depend on the weights).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
import json
import os
from pathlib import Path
import platform
import statistics
import sys
import tempfile
import time
from typing import Any

import numpy as np
import torch

from craik_world_model.checkpoint import load_model
from craik_world_model.config import get_preset
from craik_world_model.export import export_model
from craik_world_model.model import WorldModel
from craik_world_model.runtime import (
    WorldModelRuntime,
    load_runtime,
    tensorrt_unavailable_reason,
)

ROOT = Path(__file__).resolve().parents[1]


def _time_calls(fn: Callable[[], Any], warmup: int, runs: int, calls: int) -> list[float]:
    """``runs`` x ``calls`` timed calls after ``warmup``; seconds per call, all of them."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        for _ in range(calls):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    return times


def _summary(times: list[float], n: int, h: int) -> dict[str, float]:
    q = np.percentile(times, [10, 50, 90])
    return {'latency_ms_median': float(q[1] * 1e3), 'latency_ms_p10': float(q[0] * 1e3),
            'latency_ms_p90': float(q[2] * 1e3),
            'throughput_sample_steps_per_s': float(n * h / q[1]),
            'plans_per_s_at_one_call': float(1.0 / q[1]), 'timed_calls': len(times)}


def bench_backend(rt: WorldModelRuntime, sizes: list[tuple[int, int]],
                  args: argparse.Namespace) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    depth = rng.integers(300, 3000, (480, 640), dtype=np.uint16)
    proprio = np.array([0.5, 0.0, 0.3, 0.0], np.float32)
    z0 = rt.encode(rgb, depth, proprio)
    goal = rt.encode(rgb[::-1].copy())
    out: dict[str, Any] = {}
    for n, h in sizes:
        actions = rng.uniform(-0.05, 0.05, (n, h, 4)).astype(np.float32)
        actions[..., 3] = rng.uniform(0, 1, (n, h))
        out[f'N{n}_H{h}'] = _summary(_time_calls(
            lambda a=actions: rt.rollout_energy(z0, goal, a), args.warmup, args.runs,
            args.calls), n, h)
    enc_times = _time_calls(lambda: rt.encode(rgb, depth, proprio), 3, args.runs, 5)
    out['encode_640x480_ms_median'] = float(statistics.median(enc_times) * 1e3)
    return out


def _int_list(text: str) -> list[int]:
    return [int(v) for v in text.split(',') if v.strip()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--model', default=str(ROOT / 'models' / 'craik_wm_cpu'),
                        help='export directory (craik wm-export)')
    parser.add_argument('--samples', default='64,256,1024', help='comma-separated N')
    parser.add_argument('--horizons', default='5,8,10', help='comma-separated H')
    parser.add_argument('--threads', type=int, default=os.cpu_count() or 1)
    parser.add_argument('--runs', type=int, default=5, help='timed runs (median over all)')
    parser.add_argument('--calls', type=int, default=10, help='calls per run')
    parser.add_argument('--warmup', type=int, default=5)
    parser.add_argument('--no-compile', action='store_true', help='skip torch.compile')
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    samples, horizons = _int_list(args.samples), _int_list(args.horizons)
    sizes = [(n, h) for h in horizons for n in samples]
    model_dir = Path(args.model)
    tmp = None
    source = str(model_dir)
    meta_path = model_dir / 'export.json'
    exported = json.loads(meta_path.read_text())['horizons'] if meta_path.exists() else []
    if any(h not in exported for h in horizons):
        tmp = tempfile.TemporaryDirectory(prefix='craik-bench-')
        if (model_dir / 'model.safetensors').exists():
            model, _ = load_model(model_dir / 'model.safetensors')
            source = f'{model_dir} (weights re-exported for horizons {horizons})'
        else:
            model = WorldModel(get_preset('cpu').model)
            with torch.no_grad():
                for p in model.predictor.parameters():
                    p.add_(torch.randn_like(p) * 0.02)
            source = 'untrained cpu preset (temporary export)'
        model_dir = Path(tmp.name)
        export_model(model, model_dir, horizons=tuple(horizons))
    report: dict[str, Any] = {
        'benchmark': 'world_model_rollout_energy', 'samples': samples, 'horizons': horizons,
        'model': source, 'threads': args.threads, 'machine': platform.processor() or
        platform.machine(), 'cpu_count': os.cpu_count(), 'torch': torch.__version__,
        # Other processes on the machine distort every figure: say how busy it was.
        'load_average_1min_before': os.getloadavg()[0], 'backends': {}}
    backends: list[tuple[str, Callable[[], WorldModelRuntime]]] = [
        ('torch_eager', lambda: load_runtime(model_dir, 'torch')),
        ('torch_compile', lambda: load_runtime(model_dir, 'torch', compile=True)),
        ('onnxruntime', lambda: load_runtime(model_dir, 'onnxruntime', threads=args.threads)),
        ('tensorrt', lambda: load_runtime(model_dir, 'tensorrt')),
    ]
    for name, make in backends:
        if name == 'torch_compile' and args.no_compile:
            report['backends'][name] = {'skipped': '--no-compile'}
            continue
        if name == 'tensorrt' and tensorrt_unavailable_reason():
            report['backends'][name] = {'skipped': tensorrt_unavailable_reason()}
            continue
        try:
            t0 = time.perf_counter()
            rt = make()
            setup_s = time.perf_counter() - t0
            result = bench_backend(rt, sizes, args)
            result['setup_s'] = setup_s
        except Exception as exc:  # a backend that fails is reported, not fatal
            result = {'skipped': f'{type(exc).__name__}: {exc}'[:500]}
        report['backends'][name] = result
        print(f'{name}: {json.dumps(result)}', file=sys.stderr)
    base = report['backends']['torch_eager']
    for result in report['backends'].values():
        for key, figures in result.items():
            if isinstance(figures, dict) and 'latency_ms_median' in base.get(key, {}):
                figures['speedup_vs_torch_eager'] = (base[key]['latency_ms_median']
                                                     / figures['latency_ms_median'])
    report['load_average_1min_after'] = os.getloadavg()[0]
    print(json.dumps(report, indent=2))
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == '__main__':
    sys.exit(main())
