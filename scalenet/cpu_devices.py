"""Simulated CPU devices (`--xla_force_host_platform_device_count`) that do not deadlock.

XLA:CPU runs the programs of simulated devices on shared thread pools. With
multi-threaded Eigen, a device's all-reduce can wait on an Eigen pool thread
for a participant that never gets to run, and XLA aborts the process after
40 s (`rendezvous.cc ... Termination timeout`). It happened to evaluate.py
with 2 simulated devices on 2 loaded cores (2 of 17 runs), and never with
single-threaded Eigen (0 of 51). The entry points therefore turn Eigen's
threads off where devices are simulated, unless the flags say otherwise.
"""

from __future__ import annotations

import os
import re

_COUNT = re.compile(r'--xla_force_host_platform_device_count=(\d+)')
_EIGEN = '--xla_cpu_multi_thread_eigen'


def safe_xla_flags(flags: str) -> str:
  """`flags` plus `--xla_cpu_multi_thread_eigen=false` where they simulate
  more than one CPU device and do not set that flag themselves."""
  counts = _COUNT.findall(flags)
  if not counts or int(counts[-1]) <= 1 or _EIGEN in flags:
    return flags
  return f'{flags} {_EIGEN}=false'.strip()


def apply(environ=os.environ) -> bool:
  """Amends environ['XLA_FLAGS'] with `safe_xla_flags`; True if it changed.

  Call before the first jax computation (the CPU client reads XLA_FLAGS
  when it is created).
  """
  flags = environ.get('XLA_FLAGS', '')
  safe = safe_xla_flags(flags)
  environ['XLA_FLAGS'] = safe
  return safe != flags
