"""How many cores XLA:CPU gives the DFT path's contraction over channels.

  python benchmarks/threads_bench.py [--batch 128] [--repeats 20]
  XLA_FLAGS=--xla_force_host_platform_device_count=2 python benchmarks/threads_bench.py

The DSS models' DFT convs spend most of their step in one product per
frequency, [B, Cin] x [Cin, Cout] complex (`conv._dft`, 'fgbc,fgco->fgbo').
For each DSS layer shape (7x7 'SAME', batch 128) this prints the ms and the
process's CPU time / wall time (1.0 = one core busy, 2.0 = both) of:

  complex    the product as conv._dft computes it (complex64);
  block      its real block form [B, 2Cin] x [2Cin, 2Cout] per frequency,
             operands built beforehand (f32; the same flops);
  one gemm   the same f32 flops as one unbatched [F*B, 2Cin] x [2Cin, 2Cout]
             product (not the same result: what the hardware gives a large
             matrix product);
  2 x        two independent complex products of the same shape in one jitted
             function (does XLA run independent ops side by side?);
  sharded    with several devices (XLA_FLAGS above): the complex product with
             the batch split over them.

GFLOP/s counts 8 real flops per complex multiply-add.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from benchmarks._timing import environment, time_fn
from scalenet import conv

# (name, map size, Cin, Cout, dilation): the DFT-path layers of
# mnist_dss_scalar_28 / mnist_dss_vector_28 (7x7 kernels, scales 1 and 2).
SHAPES = [
    ('dss 14x14 32->63', 14, 32, 63, 1),
    ('dss 14x14 32->63 dil 2', 14, 32, 63, 2),
    ('dss 7x7 63->95', 7, 63, 95, 1),
    ('dss 7x7 63->95 dil 2', 7, 63, 95, 2),
]


def timed(fn, *args, repeats: int) -> tuple[float, float]:
  """(median ms, CPU seconds / wall seconds over the timed calls) of jit(fn)."""
  t = time_fn(fn, *args, repeats=repeats)
  return t['median_ms'], t['cpu_per_wall']


def spectra_shape(size: int, dilation: int) -> tuple[int, int]:
  """(F1, F2) of conv._dft for a 7x7 'SAME' conv on a size x size map."""
  pads = conv.resolve_padding('SAME', (size, size), (7, 7), 1, dilation)[0]
  n = conv.dft_length(size, pads)
  return n, n // 2 + 1


def _product(x, w):
  return jnp.einsum('fgbc,fgco->fgbo', x, w)


def main():
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--batch', type=int, default=128)
  parser.add_argument('--repeats', type=int, default=20)
  args = parser.parse_args()
  print(environment(), '| load average', np.round(os.getloadavg(), 2).tolist())
  devices = jax.devices()
  rng = np.random.default_rng(0)
  b = args.batch
  header = ['shape', 'F1 x F2', 'complex ms (cpu/wall)', 'GFLOP/s', 'block', 'one gemm', '2 x']
  if len(devices) > 1:
    header.append(f'sharded over {len(devices)}')
  print('| ' + ' | '.join(header) + ' |')
  print('|' + '---|' * len(header))
  for name, size, cin, cout, dilation in SHAPES:
    f1, f2 = spectra_shape(size, dilation)

    def cplx(*shape):
      return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)

    x, w = cplx(f1, f2, b, cin), cplx(f1, f2, cin, cout)
    x2 = cplx(f1, f2, b, cin)
    block_x = np.concatenate([x.real, x.imag], -1)
    block_w = np.concatenate([np.concatenate([w.real, w.imag], -1),
                              np.concatenate([-w.imag, w.real], -1)], -2)
    flat_x = block_x.reshape(-1, 2 * cin)
    flops = 8 * f1 * f2 * b * cin * cout
    rep = args.repeats
    c_ms, c_u = timed(_product, x, w, repeats=rep)
    b_ms, b_u = timed(lambda a, v: jnp.einsum('fgbc,fgco->fgbo', a, v), block_x, block_w,
                      repeats=rep)
    g_ms, g_u = timed(lambda a, v: a @ v, flat_x, block_w[0, 0], repeats=rep)
    t_ms, t_u = timed(lambda a, a2, v: (_product(a, v), _product(a2, v)), x, x2, w,
                      repeats=rep)
    row = [name, f'{f1} x {f2}', f'{c_ms:.2f} ({c_u:.1f})', f'{flops / c_ms / 1e6:.0f}',
           f'{b_ms:.2f} ({b_u:.1f})', f'{g_ms:.2f} ({g_u:.1f})', f'{t_ms:.2f} ({t_u:.1f})']
    if len(devices) > 1 and b % len(devices) == 0:
      mesh = jax.sharding.Mesh(np.array(devices), ('data',))
      xs = jax.device_put(x, NamedSharding(mesh, P(None, None, 'data')))
      ws = jax.device_put(w, NamedSharding(mesh, P()))
      s_ms, s_u = timed(_product, xs, ws, repeats=rep)
      row.append(f'{s_ms:.2f} ({s_u:.1f})')
    print('| ' + ' | '.join(row) + ' |', flush=True)
  print('load average at the end', np.round(os.getloadavg(), 2).tolist())


if __name__ == '__main__':
  main()
