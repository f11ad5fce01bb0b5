"""Where one training step's time goes: XLA's executed ops, grouped.

  python benchmarks/profile_step.py [--models dss_v1,mnist_cnn_28] [--batch 128]
      [--steps 3] [--top 12] [--path auto|direct|dft]

For each registered model, the jitted Adam step of `benchmarks._timing`
(forward, backward, update) runs `steps` times under `jax.profiler`; the
trace's events on XLA's compute threads are summed per HLO instruction (a
fusion, a dot, a conv, a scatter, ...) and divided by `steps`. Each
instruction is labelled from its metadata in the compiled HLO:

  phase   forward (`jvp(...)`), backward (`transpose(jvp(...))`), update
          (neither: the optimizer and the parameter update), or unlabelled
          (an instruction XLA created without metadata, e.g. the convolution
          computing a kernel gradient);
  kind    the primitive that the fusion's root computes (conv_general_dilated,
          dot_general, fft, gather, scatter-add, reduce_*, transpose, ...), or
          for an unlabelled one '(opcode)' of the root of what it calls.

Printed: the step's wall time, the summed op time (on 2 threads it can exceed
the wall time; a large gap the other way is time outside XLA's ops: host
work, dispatch, transfers), the share of each (phase, kind) and the `top`
most expensive instructions with their HLO op_name. This is what the speed
issue's "the whole step" asks for: whether BatchNorm, the scale pool, the
Adam update or copies take a share worth optimising, next to the convs.
"""

from __future__ import annotations

import argparse
import collections
import glob
import os
import re
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax
import numpy as np
from flax import nnx

from benchmarks._timing import environment, train_state, train_step
from scalenet import conv, models

# One instruction of compiled HLO text: `[ROOT] %name = <type> <opcode>(...) ...`.
_INSTRUCTION = re.compile(r'^\s*(ROOT\s+)?%([\w.\-]+)\s*=\s*\S+\s+([\w\-]+)\((.*)$')
_OP_NAME = re.compile(r'op_name="([^"]*)"')
_CALLS = re.compile(r'calls=%([\w.\-]+)')
# Events that wrap others (the executor) rather than run an op.
_WRAPPERS = ('ThunkExecutor', 'Execute', 'PjRt', '$')


def op_labels(hlo_text: str) -> dict[str, str]:
  """HLO instruction name -> its op_name metadata (the JAX primitive path).

  Instructions that XLA created (no metadata of their own, e.g. the fusion
  computing a conv's kernel gradient) take the op_name of the root of the
  computation they call, or failing that '(opcode)' of that root.
  """
  own, calls, roots = {}, {}, {}
  computation = None
  for line in hlo_text.splitlines():
    if line.endswith('{') and not line.startswith(' '):
      computation = line.split()[1 if line.startswith('ENTRY') else 0].lstrip('%')
      continue
    match = _INSTRUCTION.match(line)
    if not match:
      continue
    is_root, name, opcode, rest = match.groups()
    op_name = _OP_NAME.search(rest)
    own[name] = op_name.group(1) if op_name else ''
    called = _CALLS.search(rest)
    if called:
      calls[name] = called.group(1)
    if is_root and computation:
      roots[computation] = own[name] or f'({opcode})'
  return {name: op_name or roots.get(calls.get(name, ''), '') for name, op_name in own.items()}


def classify(op_name: str) -> tuple[str, str]:
  """(phase, kind) of an op_name such as 'jit(train_step)/transpose(jvp())/conv_general_dilated'."""
  if 'transpose(' in op_name:
    phase = 'backward'
  elif 'jvp(' in op_name:
    phase = 'forward'
  else:
    phase = 'update'
  if op_name.startswith('('):  # no metadata: the root opcode of its computation
    return 'unlabelled', op_name
  kind = op_name.rstrip('/').rsplit('/', 1)[-1] or '?'
  kind = re.sub(r'^jit\((\w+)\)$', r'\1', kind)
  return phase, kind


def traced_op_times(trace_dir: str) -> collections.Counter:
  """Summed ns per event name over the trace's XLA compute threads."""
  from jax._src.profiler import ProfileData  # pylint: disable=g-import-not-at-top
  files = glob.glob(os.path.join(trace_dir, '**', '*.xplane.pb'), recursive=True)
  if not files:
    raise RuntimeError(f'jax.profiler wrote no trace under {trace_dir}.')
  totals = collections.Counter()
  for plane in ProfileData.from_file(max(files, key=os.path.getmtime)).planes:
    for line in plane.lines:
      if 'python' in line.name.lower():
        continue
      for event in line.events:
        if not event.name.startswith(_WRAPPERS):
          totals[event.name] += event.duration_ns
  return totals


def profile(name: str, batch: int, steps: int):
  """(wall ms per step, {instruction: (ms per step, phase, kind, op_name)})."""
  model = models.get_model(name, rngs=nnx.Rngs(0))
  shape = (32, 32, 3) if name.startswith('resnet') else (28, 28, 1)
  x = jax.random.uniform(jax.random.key(0), (batch, *shape))
  y = jax.random.randint(jax.random.key(1), (batch,), 0, 10)
  graphdef, state, data = train_state(model, x, y)
  labels = op_labels(train_step.lower(graphdef, state, data).compile().as_text())
  for _ in range(2):  # compile, then one warm-up step
    state, loss = train_step(graphdef, state, data)
    jax.block_until_ready(loss)
  with tempfile.TemporaryDirectory() as trace_dir:
    jax.profiler.start_trace(trace_dir)
    t0 = time.perf_counter()
    for _ in range(steps):
      state, loss = train_step(graphdef, state, data)
      jax.block_until_ready(loss)
    wall_ms = (time.perf_counter() - t0) * 1e3 / steps
    jax.profiler.stop_trace()
    totals = traced_op_times(trace_dir)
  ops = {}
  for event, ns in totals.items():
    op_name = labels.get(event, '')
    ops[event] = (ns / 1e6 / steps, *classify(op_name), op_name)
  return wall_ms, ops


def report(name: str, wall_ms: float, ops: dict, top: int) -> str:
  total = sum(ms for ms, *_ in ops.values())
  groups = collections.Counter()
  for ms, phase, kind, _ in ops.values():
    groups[(phase, kind)] += ms
  lines = [f'## {name}: step {wall_ms:.1f} ms wall, {total:.1f} ms in XLA ops '
           f'(summed over threads)', '', '| phase | kind | ms | share |', '|---|---|---|---|']
  for (phase, kind), ms in groups.most_common():
    if ms >= 0.01 * total:
      lines.append(f'| {phase} | {kind} | {ms:.1f} | {ms / total:.0%} |')
  rest = sum(ms for ms in groups.values() if ms < 0.01 * total)
  lines.append(f'| | (each < 1%) | {rest:.1f} | {rest / total:.0%} |')
  lines += ['', f'Top {top} instructions:', '', '| instruction | ms | op_name |', '|---|---|---|']
  for event, (ms, _, _, op_name) in sorted(ops.items(), key=lambda kv: -kv[1][0])[:top]:
    lines.append(f'| {event} | {ms:.1f} | {op_name or "(no metadata)"} |')
  return '\n'.join(lines)


def main():
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--models', default='dss_v1,mnist_cnn_28,mnist_dss_vector_28')
  parser.add_argument('--batch', type=int, default=128)
  parser.add_argument('--steps', type=int, default=3)
  parser.add_argument('--top', type=int, default=12)
  parser.add_argument('--path', default='auto', choices=('auto', 'direct', 'dft'),
                      help="conv2d path of every 'auto' conv (conv.force_method)")
  args = parser.parse_args()
  names = args.models.split(',')
  unknown = [n for n in names if n not in models.MODELS]
  if unknown:
    parser.error(f'unknown models {unknown}; registered: {sorted(models.MODELS)}')
  print(environment(), f'| conv2d path {args.path} | load average '
        f'{np.round(os.getloadavg(), 2).tolist()}')
  with conv.force_method(None if args.path == 'auto' else args.path):
    for name in names:
      wall_ms, ops = profile(name, args.batch, args.steps)
      print(report(name, wall_ms, ops, args.top), '\n', flush=True)
  print(f'load average at the end {np.round(os.getloadavg(), 2).tolist()}')


if __name__ == '__main__':
  main()
