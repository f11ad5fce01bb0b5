"""scalenet vs PyTorch on the same shapes, same machine, same run; prints ratios.

  python3.11 -m venv .venv-bench && .venv-bench/bin/pip install -r benchmarks/requirements.txt
  .venv-bench/bin/python benchmarks/compare_torch.py [--only NAME,...] [--device cpu|gpu]

`--only` takes op sections and model registry names (default: every section
and every registered model):
  deform      deform_conv (and its autodiff oracle) vs torchvision.ops.deform_conv2d, and
              the ratio to a plain conv of the same shape;
  scale_conv  scale_conv vs a PyTorch loop of dilated F.conv2d calls;
  plain       a plain 3x3 conv;
  layers      the zoo's large-kernel, 7x7 and 3x3 conv layers: conv2d's direct
              and DFT paths, the path 'auto' picks, and
              torch's F.conv2d;
  models      every model in `scalenet.models.MODELS`, or NAME for one.
Per model: one Adam training step (batch 128) down conv2d's 'auto' choice and
down the direct path (`conv.force_method`), the ratio, the PyTorch twin where
one exists (the reference code of ISosnovik/sesn and ISosnovik/disco, loaded at
run time by benchmarks/torch_reference.py; for dss_v1 and sesn the twins
below, with the Flax weights copied in and logits compared), and the
roofline: FLOPs per step from `jax.stages` cost analysis of the direct-path
step, divided by the step time.

PyTorch is a benchmark-only dependency (benchmarks/requirements.txt): without
it the script says how to install it and exits 0. Medians of `repeats` runs
after warm-up; ratio = torch ms / scalenet ms (> 1: scalenet faster).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from unittest import mock

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from benchmarks import torch_reference
from benchmarks._timing import environment, fwd_bwd, step_flops, time_fn, time_train_step
from scalenet import conv, deform, models, scale_convolution, scale_space

try:
  import torch
  import torch.nn.functional as F
except ImportError as e:  # pragma: no cover - depends on the benchmark venv
  torch = None
  _IMPORT_ERROR = e
try:  # only the deform section needs it
  import torchvision
except ImportError:  # pragma: no cover - depends on the benchmark venv
  torchvision = None

INSTALL = ('python3.11 -m venv .venv-bench && '
           '.venv-bench/bin/pip install -r benchmarks/requirements.txt')


# ----------------------------------------------------------------- timing

def time_torch(fn, repeats: int, warmup: int = 2, sync=None) -> float:
  """Median wall time in ms of fn() (a closure doing the whole computation)."""
  for _ in range(warmup):
    fn()
  if sync:
    sync()
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    fn()
    if sync:
      sync()
    times.append((time.perf_counter() - t0) * 1e3)
  return float(np.median(times))


def _row(name, jax_ms, torch_ms, extra=''):
  print(f'{name:<40}{jax_ms:>11.2f}{torch_ms:>11.2f}{torch_ms / jax_ms:>8.2f}x  {extra}',
        flush=True)


def _t(a, device):
  return torch.from_numpy(np.array(a, np.float32)).to(device)


# ------------------------------------------------------------ (a) deform

def bench_deform(args, device):
  rng = np.random.default_rng(0)
  b, h, w, cin, cout = 32, 28, 28, 32, 32
  x = rng.standard_normal((b, h, w, cin), np.float32)
  k = rng.standard_normal((3, 3, cin, cout), np.float32) * 0.05
  off = rng.standard_normal((b, h, w, 9, 2), np.float32)
  mask = 1 / (1 + np.exp(-rng.standard_normal((b, h, w, 9), np.float32)))
  # torchvision layouts: NCHW input, OIHW weight, offsets [B, 2K, H, W] with
  # (dy, dx) interleaved per tap, mask [B, K, H, W].
  xt = _t(x.transpose(0, 3, 1, 2), device).requires_grad_(True)
  kt = _t(k.transpose(3, 2, 0, 1), device).requires_grad_(True)
  offt = _t(off.reshape(b, h, w, 18).transpose(0, 3, 1, 2), device)
  maskt = _t(mask.transpose(0, 3, 1, 2), device)
  sync = torch.cuda.synchronize if device.type == 'cuda' else None
  plain = lambda x, k: conv.conv2d(x, k, padding=1, method='direct')
  plain_fw = time_fn(plain, x, k, repeats=args.repeats)['median_ms']
  plain_bw = time_fn(fwd_bwd(plain), x, k, repeats=args.repeats)['median_ms']
  print(f'plain conv of the same shape (jax): fwd {plain_fw:.2f} ms, fwd+bwd {plain_bw:.2f} ms')
  for version, m, mt in (('v1', None, None), ('v2', mask, maskt)):
    # Every impl as run ('auto': cache-sized batch chunks on CPU), then the
    # default impl on the whole batch at once, the path before chunking.
    auto_chunk = deform.chunk_size(b, h * w * 9 * cin * 4)
    for impl, chunk in [(i, 'auto') for i in deform.IMPLS] + [(deform.DEFAULT_IMPL, b)]:
      f = lambda x, k, impl=impl, m=m, chunk=chunk: deform.deform_conv(
          x, jnp.asarray(off), k, mask=None if m is None else jnp.asarray(m), padding=1,
          impl=impl, chunk=chunk)
      label = (f'{impl}, chunk {auto_chunk}' if chunk == 'auto' else f'{impl}, whole batch')
      ours = np.asarray(jax.jit(f)(x, k)).transpose(0, 3, 1, 2)
      with torch.no_grad():
        ref = torchvision.ops.deform_conv2d(xt, offt, kt, padding=1, mask=mt).cpu().numpy()
      err = float(np.max(np.abs(ours - ref)))
      fw = time_fn(f, x, k, repeats=args.repeats)['median_ms']
      bw = time_fn(fwd_bwd(f), x, k, repeats=args.repeats)['median_ms']

      def t_fwd():
        with torch.no_grad():
          torchvision.ops.deform_conv2d(xt, offt, kt, padding=1, mask=mt)

      def t_bwd():
        y = torchvision.ops.deform_conv2d(xt, offt, kt, padding=1, mask=mt)
        (y ** 2).sum().backward()
        xt.grad = kt.grad = None

      _row(f'deform_conv_{version}[{label}] fwd', fw, time_torch(t_fwd, args.repeats, sync=sync),
           f'max abs diff {err:.1e}; {fw / plain_fw:.1f}x plain conv')
      _row(f'deform_conv_{version}[{label}] fwd+bwd', bw,
           time_torch(t_bwd, args.repeats, sync=sync), f'{bw / plain_bw:.1f}x plain conv')


# -------------------------------------------------------- (b) scale conv

def torch_scale_conv(x, weight, bias, base: int):
  """x [B, C, S, H, W], weight [I, kh, kw, Cin, Cout] (Flax layout): the DSS loop.

  Output level s = sum over i < I, s+i < S of conv2d(x[:, :, s+i], w[i],
  dilation base**s), 'SAME' zero padding for odd kernels.
  """
  n_int, kh = weight.shape[0], weight.shape[1]
  num_scales = x.shape[2]
  w = weight.permute(0, 4, 3, 1, 2)  # [I, Cout, Cin, kh, kw]
  out = []
  for s in range(num_scales):
    d = base ** s
    y = None
    for i in range(min(n_int, num_scales - s)):
      z = F.conv2d(x[:, :, s + i], w[i], dilation=d, padding=d * (kh // 2))
      y = z if y is None else y + z
    out.append(y if bias is None else y + bias[:, None, None])
  return torch.stack(out, 2)


def bench_scale_conv(args, device):
  rng = np.random.default_rng(0)
  x = rng.standard_normal((32, 4, 28, 28, 32), np.float32)
  k = rng.standard_normal((2, 3, 3, 32, 32), np.float32) * 0.05
  xt = _t(x.transpose(0, 4, 1, 2, 3), device).requires_grad_(True)
  kt = _t(k, device).requires_grad_(True)
  sync = torch.cuda.synchronize if device.type == 'cuda' else None
  with torch.no_grad():
    ref = torch_scale_conv(xt, kt, None, 2).cpu().numpy().transpose(0, 2, 3, 4, 1)
  f = lambda x, k: scale_convolution.scale_conv(x, k, base=2)
  err = float(np.max(np.abs(np.asarray(jax.jit(f)(x, k)) - ref)))
  fw = time_fn(f, x, k, repeats=args.repeats)['median_ms']
  bw = time_fn(fwd_bwd(f), x, k, repeats=args.repeats)['median_ms']

  def t_fwd():
    with torch.no_grad():
      torch_scale_conv(xt, kt, None, 2)

  def t_bwd():
    (torch_scale_conv(xt, kt, None, 2) ** 2).sum().backward()
    xt.grad = kt.grad = None

  _row('scale_conv fwd', fw, time_torch(t_fwd, args.repeats, sync=sync),
       f'max abs diff {err:.1e}')
  _row('scale_conv fwd+bwd', bw, time_torch(t_bwd, args.repeats, sync=sync))


def bench_plain_conv(args, device):
  """A plain 3x3 conv of the DCN-sized layer: the unit both frameworks build on."""
  rng = np.random.default_rng(0)
  x = rng.standard_normal((32, 28, 28, 32), np.float32)
  k = rng.standard_normal((3, 3, 32, 32), np.float32) * 0.05
  xt = _t(x.transpose(0, 3, 1, 2), device).requires_grad_(True)
  kt = _t(k.transpose(3, 2, 0, 1), device).requires_grad_(True)
  sync = torch.cuda.synchronize if device.type == 'cuda' else None
  f = lambda x, k: jax.lax.conv_general_dilated(x, k, (1, 1), 'SAME',
                                                dimension_numbers=('NHWC', 'HWIO', 'NHWC'))

  def t_fwd():
    with torch.no_grad():
      F.conv2d(xt, kt, padding=1)

  def t_bwd():
    (F.conv2d(xt, kt, padding=1) ** 2).sum().backward()
    xt.grad = kt.grad = None

  _row('plain conv fwd', time_fn(f, x, k, repeats=args.repeats)['median_ms'],
       time_torch(t_fwd, args.repeats, sync=sync))
  _row('plain conv fwd+bwd', time_fn(fwd_bwd(f), x, k, repeats=args.repeats)['median_ms'],
       time_torch(t_bwd, args.repeats, sync=sync))


# ------------------------------------------------ (c) full training steps

class TorchHead(torch.nn.Module if torch else object):
  def __init__(self, c, k):
    super().__init__()
    self.bn, self.dense = torch.nn.BatchNorm1d(c), torch.nn.Linear(c, k)

  def forward(self, f):  # f [B, C, H, W]
    return self.dense(self.bn(f.amax(dim=(2, 3))))


class TorchDSS(torch.nn.Module if torch else object):
  """DSS v1 as scalenet builds it: lift, (scale conv, relu, BN, pool) x3, mean, head."""

  def __init__(self, channels=(32, 64, 96), num_scales=4, base=2, interaction=2,
               zero_scale=0.5, pools=2):
    super().__init__()
    kern = scale_space._stacked_kernels(
        scale_space.level_variances(num_scales, base, zero_scale))  # [S, k]
    self.register_buffer('lift_k', torch.from_numpy(np.array(kern, np.float32)))
    self.base, self.pools = base, pools
    widths = (1, *channels)
    self.weights = torch.nn.ParameterList(
        [torch.nn.Parameter(torch.zeros(interaction, 3, 3, widths[i], widths[i + 1]))
         for i in range(len(channels))])
    self.biases = torch.nn.ParameterList(
        [torch.nn.Parameter(torch.zeros(c)) for c in channels])
    self.bns = torch.nn.ModuleList([torch.nn.BatchNorm3d(c) for c in channels])
    self.head = TorchHead(channels[-1], 10)

  def lift(self, x):  # [B, 1, H, W] -> [B, 1, S, H, W]
    s, k = self.lift_k.shape
    y = F.conv2d(x, self.lift_k.reshape(s, 1, k, 1), padding=(k // 2, 0))
    y = F.conv2d(y, self.lift_k.reshape(s, 1, 1, k), padding=(0, k // 2), groups=s)
    return y[:, None]

  def forward(self, x):
    z = self.lift(x)
    for i, (w, b, bn) in enumerate(zip(self.weights, self.biases, self.bns)):
      z = bn(F.relu(torch_scale_conv(z, w, b, self.base)))
      if i < self.pools:
        z = F.max_pool3d(z, (1, 2, 2))
    return self.head(z.mean(2))


class TorchSESN(torch.nn.Module if torch else object):
  """SESN as scalenet builds it: Hermite basis lift + group convs, max over scales, head."""

  def __init__(self, basis, channels=(32, 63, 95), interaction=2, pools=2):
    super().__init__()
    basis = np.asarray(basis)  # [F, S, k, k], the Flax model's own
    self.register_buffer('basis', torch.from_numpy(np.array(basis, np.float32)))
    self.interaction, self.pools = interaction, pools
    widths = (1, *channels)
    nf = basis.shape[0]
    self.weights = torch.nn.ParameterList([
        torch.nn.Parameter(torch.zeros(1 if i == 0 else interaction, widths[i], widths[i + 1], nf))
        for i in range(len(channels))])
    self.biases = torch.nn.ParameterList([torch.nn.Parameter(torch.zeros(c)) for c in channels])
    self.bns = torch.nn.ModuleList([torch.nn.BatchNorm3d(c) for c in channels])
    self.head = TorchHead(channels[-1], 10)

  def kernels(self, w):  # w [I, Cin, Cout, F] -> [S, Cout, I*Cin, k, k]
    w = w.reshape(-1, *w.shape[2:])
    return torch.einsum('iof,fsyx->soiyx', w, self.basis)

  def conv(self, z, w, b, lift):
    kern = self.kernels(w)
    s, cout, cin, k = kern.shape[0], kern.shape[1], kern.shape[2], kern.shape[-1]
    flat = kern.reshape(s * cout, cin, k, k)
    if lift:  # z [B, Cin, H, W]
      y = F.conv2d(z, flat, padding=k // 2)
    else:  # z [B, C, S, H, W]: level s reads levels s..s+I-1, zeros past the top
      bsz, c, _, h, wd = z.shape
      padded = F.pad(z, (0, 0, 0, 0, 0, self.interaction - 1))
      stack = torch.stack([padded[:, :, i:i + s] for i in range(self.interaction)], 1)
      grouped = stack.permute(0, 3, 1, 2, 4, 5).reshape(bsz, s * self.interaction * c, h, wd)
      y = F.conv2d(grouped, flat, padding=k // 2, groups=s)
    y = y.reshape(y.shape[0], s, cout, *y.shape[2:]).permute(0, 2, 1, 3, 4)
    return y + b[None, :, None, None, None]

  def forward(self, x):
    z = x
    for i, (w, b, bn) in enumerate(zip(self.weights, self.biases, self.bns)):
      z = bn(F.relu(self.conv(z, w, b, lift=i == 0)))
      if i < self.pools:
        z = F.max_pool3d(z, (1, 2, 2))
    return self.head(z.amax(2))


def copy_weights(flax_model, torch_model, conv_key):
  """Flax NNX state -> the torch twin (same layouts by construction)."""
  st = nnx.to_pure_dict(nnx.state(flax_model))
  with torch.no_grad():
    for i, blk in st['blocks'].items():
      torch_model.weights[i].copy_(torch.from_numpy(np.array(blk['conv'][conv_key])))
      torch_model.biases[i].copy_(torch.from_numpy(np.array(blk['conv']['bias'])))
      torch_model.bns[i].weight.copy_(torch.from_numpy(np.array(blk['bn']['scale'])))
      torch_model.bns[i].bias.copy_(torch.from_numpy(np.array(blk['bn']['bias'])))
    head = st['head']
    torch_model.head.bn.weight.copy_(torch.from_numpy(np.array(head['bn']['scale'])))
    torch_model.head.bn.bias.copy_(torch.from_numpy(np.array(head['bn']['bias'])))
    torch_model.head.dense.weight.copy_(torch.from_numpy(np.array(head['dense']['kernel']).T))
    torch_model.head.dense.bias.copy_(torch.from_numpy(np.array(head['dense']['bias'])))


# Conv layers of the model zoo, batch 128 in the models: (name, H, Cin, Cout, k,
# dilation). SESN/DISCO (reference widths x scales), the CNN-28 7x7s, DSS's
# dilated 7x7s, 3x3s of dss_v1 and the study CNN.
LAYERS = [
    ('ses lift 28x28 1->32x4 15x15', 28, 1, 128, 15, 1),
    ('ses 14x14 32->63x4 15x15', 14, 32, 252, 15, 1),
    ('ses 7x7 63->95x4 15x15', 7, 63, 380, 15, 1),
    ('disco lift 56x56 1->32x4 15x15', 56, 1, 128, 15, 1),
    ('disco 28x28 32->63 15x15 (x4 levels)', 28, 32, 63, 15, 1),
    ('cnn 28x28 1->32 7x7', 28, 1, 32, 7, 1),
    ('cnn 14x14 32->63 7x7', 14, 32, 63, 7, 1),
    ('cnn 7x7 63->95 7x7', 7, 63, 95, 7, 1),
    ('dss 14x14 32->63 7x7 dil 2', 14, 32, 63, 7, 2),
    ('dss 7x7 63->95 7x7 dil 4', 7, 63, 95, 7, 4),
    ('dss_v1 14x14 32->64 3x3 dil 2', 14, 32, 64, 3, 2),
    ('cnn 28x28 32->32 3x3', 28, 32, 32, 3, 1),
]


def bench_layers(args, device):
  """fwd+bwd ms of each zoo conv layer: direct, DFT, what 'auto' picks, torch."""
  rng = np.random.default_rng(0)
  b = args.layer_batch
  sync = torch.cuda.synchronize if device.type == 'cuda' else None
  print(f'-- conv layers, batch {b}, fwd+bwd ms: direct / dft / '
        f'direct with channel padding; torch; auto picks')
  for name, h, cin, cout, k, d in LAYERS:
    x = rng.standard_normal((b, h, h, cin), np.float32)
    kern = rng.standard_normal((k, k, cin, cout), np.float32) / np.sqrt(k * k * cin)
    pick = conv.auto_method(x.shape, kern.shape, 'SAME', 1, d)
    ms = {}
    for label, method, padc in (('direct', 'direct', False), ('dft', 'dft', False),
                                ('direct+pad', 'direct', True)):
      if padc and conv.padded_channels(cin) == cin and conv.padded_channels(cout) == cout:
        continue
      f = lambda x, k, m=method, p=padc: conv.conv2d(x, k, padding='SAME', dilation=d,
                                                     method=m, pad_channels=p)
      ms[label] = time_fn(fwd_bwd(f), x, kern, repeats=args.layer_repeats,
                          warmup=0)['median_ms']
    xt = _t(x.transpose(0, 3, 1, 2), device).requires_grad_(True)
    kt = _t(kern.transpose(3, 2, 0, 1), device).requires_grad_(True)

    def t_bwd():
      (F.conv2d(xt, kt, padding=d * (k // 2), dilation=d) ** 2).sum().backward()
      xt.grad = kt.grad = None

    torch_ms = time_torch(t_bwd, args.layer_repeats, warmup=1, sync=sync)
    cols = '  '.join(f'{lab} {v:.1f}' for lab, v in ms.items())
    best = ms[pick]
    print(f'{name:<40}{cols}  torch {torch_ms:.1f}  auto={pick} '
          f'({torch_ms / best:.2f}x torch)', flush=True)


def _step_flops(model, x, y):
  """FLOPs of one training step, direct path: the convolutions as defined.

  deform_conv samples the whole batch at once here: XLA's cost analysis
  counts the body of its chunk loop (`lax.map`) once, not once per chunk.
  """
  whole_batch = lambda batch, *unused_args, **unused_kwargs: batch
  with conv.force_method('direct'), mock.patch.object(deform, 'chunk_size', whole_batch):
    return step_flops(model, x, y)


def _input_shape(name):
  return (32, 32, 3) if name.startswith('resnet') else (28, 28, 1)


def _torch_twin(name, model, twins, device):
  """(torch model or None, note)."""
  if name == 'dss_v1':
    tm = TorchDSS().to(device)
    copy_weights(model, tm, 'kernel')
    return tm, 'twin below, weights copied'
  if name == 'sesn':
    tm = TorchSESN(np.asarray(model.blocks[0].conv.basis)).to(device)
    copy_weights(model, tm, 'weight')
    return tm, 'twin below, weights copied'
  if name in twins:
    return twins[name]().to(device), 'reference code'
  return None, 'no torch twin'


def bench_models(args, device, names):
  rng = np.random.default_rng(0)
  sync = torch.cuda.synchronize if device.type == 'cuda' else None
  twins = {}
  try:
    twins = torch_reference.reference_models(args.reference_dir)
  except Exception as e:  # pragma: no cover - depends on the mirrors being there
    print(f'(reference torch models unavailable: {type(e).__name__}: {e})')
  paths = args.paths.split(',')
  print(f'-- training step ms (batch {args.batch}, Adam): ' + ' | '.join(
      f'ours[{p}]' for p in paths) + ' | torch | torch/ours[auto] | GFLOP/step | '
      'GFLOP/s at ours[auto] | params ours/torch | note')
  for name in names:
    try:
      _bench_model(args, device, name, rng, sync, twins, paths)
    except Exception as e:  # pylint: disable=broad-except  # report and go on
      print(f'{name}: failed ({type(e).__name__}: {str(e)[:300]})', flush=True)


def _bench_model(args, device, name, rng, sync, twins, paths):
  """One row of the model table."""
  if args.deadline_s and time.perf_counter() - _START > args.deadline_s:
    print(f'{name}: skipped (--deadline-s {args.deadline_s:.0f} reached)', flush=True)
    return
  shape = _input_shape(name)
  x = rng.uniform(size=(args.batch, *shape)).astype(np.float32)
  y = rng.integers(0, 10, args.batch).astype(np.int32)
  try:
    model = models.get_model(name, rngs=nnx.Rngs(0))
  except Exception as e:
    print(f'{name}: cannot build ({type(e).__name__}: {e})', flush=True)
    return
  n_ours = models.count_params(model)
  note = ''
  tm, note = None, 'no torch twin'
  try:
    tm, note = _torch_twin(name, model, twins, device)
  except Exception as e:
    note = f'twin failed: {type(e).__name__}: {e}'
  torch_ms, n_t = float('nan'), None
  if tm is not None:
    n_t = sum(p.numel() for p in tm.parameters() if p.requires_grad)
    tm.train()
    xt = _t(x.transpose(0, 3, 1, 2), device)
    yt = torch.from_numpy(y.astype(np.int64)).to(device)
    if note.startswith('twin below'):
      model.train()
      ours = np.asarray(nnx.jit(lambda m, x: m(x))(model, jnp.asarray(x)))
      with torch.no_grad():
        note += f', logits max abs diff {np.max(np.abs(ours - tm(xt).cpu().numpy())):.1e}'
    opt = torch.optim.Adam(tm.parameters(), 1e-2)

    def t_step():
      opt.zero_grad(set_to_none=True)
      F.cross_entropy(tm(xt), yt).backward()
      opt.step()

    torch_ms = time_torch(t_step, args.model_repeats, warmup=1, sync=sync)
  ms = {}
  for p in paths:
    with conv.force_method(None if p == 'auto' else p):
      ms[p] = time_train_step(models.get_model(name, rngs=nnx.Rngs(0)), x, y,
                              args.model_repeats, budget_s=args.budget_s)['median_ms']
  flops = _step_flops(models.get_model(name, rngs=nnx.Rngs(0)), x, y)
  ours = ms.get('auto', next(iter(ms.values())))
  cols = ' | '.join(f'{ms[p]:.1f}' for p in paths)
  print(f'{name} | {cols} | {torch_ms:.1f} | {torch_ms / ours:.2f}x | {flops / 1e9:.2f} | '
        f'{flops / 1e9 / (ours / 1e3):.1f} | {n_ours:,} / '
        f'{"-" if n_t is None else f"{n_t:,}"} | {note}', flush=True)


SECTIONS = ('deform', 'scale_conv', 'plain', 'layers', 'models')
_START = time.perf_counter()


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--repeats', type=int, default=20)
  parser.add_argument('--model-repeats', type=int, default=5)
  parser.add_argument('--layer-repeats', type=int, default=3)
  parser.add_argument('--layer-batch', type=int, default=32)
  parser.add_argument('--batch', type=int, default=128)
  parser.add_argument('--budget-s', type=float, default=60.0,
                      help='stop repeating a training step once this much time is spent')
  parser.add_argument('--deadline-s', type=float, default=0.0,
                      help='skip the models not started this many seconds into the run')
  parser.add_argument('--paths', default='auto,direct',
                      help="conv2d paths to time each model with: auto, direct, dft")
  parser.add_argument('--device', choices=('cpu', 'gpu'), default='cpu')
  parser.add_argument('--only', default=','.join(SECTIONS),
                      help='sections and/or model registry names, comma-separated')
  parser.add_argument('--reference-dir', default=None,
                      help='extracted reference code (torch_reference.extract); '
                           'default: extract from the git mirrors')
  args = parser.parse_args()
  if torch is None:
    print(f'PyTorch not installed ({_IMPORT_ERROR}); this benchmark needs it:\n'
          f'  {INSTALL}\nSkipped.')
    return
  if args.device == 'gpu':
    if jax.default_backend() != 'gpu' or not torch.cuda.is_available():
      sys.exit(f'--device gpu: JAX backend is {jax.default_backend()!r}, torch CUDA '
               f'available: {torch.cuda.is_available()}; both must see the GPU.')
    device = torch.device('cuda')
  else:
    jax.config.update('jax_platforms', 'cpu')
    device = torch.device('cpu')
    torch.set_num_threads(os.cpu_count() or 1)
  only = args.only.split(',')
  unknown = [o for o in only if o not in SECTIONS and o not in models.MODELS]
  if unknown:
    sys.exit(f'--only: unknown {unknown}; sections {SECTIONS}, models {sorted(models.MODELS)}')
  print(environment())
  print(f'torch {torch.__version__}, torchvision '
        f'{torchvision.__version__ if torchvision else "not installed"}, '
        f'{torch.get_num_threads()} threads, device {device}; load average {os.getloadavg()}')
  print(f'{"op":<40}{"jax ms":>11}{"torch ms":>11}{"ratio":>9}')
  if 'deform' in only:
    if torchvision is None:
      print(f'deform: skipped (torchvision not installed: {INSTALL})')
    else:
      bench_deform(args, device)
  if 'scale_conv' in only:
    bench_scale_conv(args, device)
  if 'plain' in only:
    bench_plain_conv(args, device)
  if 'layers' in only:
    bench_layers(args, device)
  names = list(models.MODELS) if 'models' in only else [o for o in only if o in models.MODELS]
  if names:
    bench_models(args, device, names)
  print(f'load average at the end {os.getloadavg()}')


if __name__ == '__main__':
  main()
