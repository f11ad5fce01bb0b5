"""Where evaluate() spends its time: python benchmarks/eval_bench.py --workdir W.

Times reading every split, evaluating each split once, the on-the-fly
enlargements and the layer-wise Delta, on W's best checkpoint, and prints how
many programs the eval step compiled (one per input shape). Then the floor:
the forward passes evaluation cannot do without (every split, the
enlargements, Delta's fn(x) and fn(L_s x) per factor) at the splits' warm
rate, beside one training epoch at the run's median logged step time.
"""

import os
import sys
import time

from absl import app, flags, logging

sys.path.insert(0, '.')
from scalenet import evaluate, records, run_record, runtime  # noqa: E402
from scalenet.data import pipeline  # noqa: E402
from flax import nnx  # noqa: E402

flags.DEFINE_string('workdir', None, 'A trained run.', required=True)
FLAGS = flags.FLAGS
ENLARGEMENTS = (1.1, 1.5, 2.0)  # accuracy-vs-scale factors no split stores


def main(_):
  logging.set_verbosity(logging.WARNING)  # orbax logs every restore at INFO
  config = run_record.read_config(FLAGS.workdir)
  with config.unlocked():
    config.eval_splits, config.progress_bar = None, False
  t0 = time.perf_counter()
  ds = pipeline.get_datasets(config)
  n = len(ds.train) + sum(len(s) for s in ds.eval.values())
  print(f'read splits: {time.perf_counter() - t0:.1f} s ({n} images)')
  mesh = runtime.make_mesh()
  eval_def, state = runtime.create_model(config, ds.num_classes, mesh)
  state, _ = evaluate.restore_selected(config, FLAGS.workdir, state,
                                       ds.steps_per_epoch(config.batch_size))
  times = {}
  for name, split in ds.eval.items():
    t0 = time.perf_counter()
    runtime.evaluate_split(eval_def, state, split, config.eval_batch_size, mesh)
    times[name] = round(time.perf_counter() - t0, 1)
  print('per split (s):', times)
  warm = list(ds.eval)[1:]  # the first split paid the compilation
  rate = sum(len(ds.eval[n]) for n in warm) / max(sum(times[n] for n in warm), 1e-9)
  t0 = time.perf_counter()
  for f in ENLARGEMENTS:
    runtime.evaluate_split(eval_def, state, ds.eval['test_s1000'], config.eval_batch_size, mesh,
                         factor=f)
  print(f'on the fly x{len(ENLARGEMENTS)} {ENLARGEMENTS}: {time.perf_counter() - t0:.1f} s')
  print('eval_step compiled programs:', runtime.eval_step._cache_size())
  images = ds.eval['test_s1000'].images[:config.eval_num_images].astype('float32') / 255
  t0 = time.perf_counter()
  eq = evaluate.equivariance_results(nnx.merge(eval_def, state), images, config)
  print(f'layer-wise Delta: {time.perf_counter() - t0:.1f} s')
  passes = (sum(len(s) for s in ds.eval.values()) + len(ENLARGEMENTS) * len(ds.eval['test_s1000'])
            + len(images) * (1 + len(eq['layerwise'])))
  print(f'floor: {passes} forward passes at the warm {rate:.0f} images/s = {passes / rate:.1f} s')
  step = records.step_seconds(os.path.join(FLAGS.workdir, 'metrics.jsonl'), config.batch_size)
  if step:
    rate = config.batch_size / step
    print(f'one training epoch: {len(ds.train)} images at {rate:.0f} images/s = '
          f'{len(ds.train) / rate:.1f} s')


if __name__ == '__main__':
  app.run(main)
