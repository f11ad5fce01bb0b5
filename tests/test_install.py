"""scalenet installs as a package (pyproject.toml), consistent with the pinned requirements."""

import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEST_ONLY = {'pytest', 'pytest-xdist', 'execnet', 'setuptools'}


def _pins(name):
  pins = {}
  for line in open(os.path.join(ROOT, name)):
    line = line.split('#')[0].strip()
    if line and not line.startswith('-r'):
      pkg, version = line.split('==')
      pins[re.sub(r'\[.*\]', '', pkg).lower()] = version
  return pins


def test_project_dependencies_are_the_pinned_runtime_set():
  with open(os.path.join(ROOT, 'pyproject.toml'), 'rb') as f:
    project = tomllib.load(f)['project']
  declared = {re.split(r'[<>=!~]', d)[0].lower(): d for d in project['dependencies']}
  pins = _pins('requirements.txt')
  assert set(declared) == set(pins) - TEST_ONLY
  for name, spec in declared.items():  # every lower bound admits the pinned version
    bound = spec.split('>=')[1]
    as_tuple = lambda v: tuple(int(p) for p in v.split('.'))
    assert as_tuple(pins[name]) >= as_tuple(bound), (name, pins[name], bound)


def test_gpu_requirements_pin_the_same_jax():
  gpu = _pins('requirements-gpu.txt')
  assert gpu['jax'] == _pins('requirements.txt')['jax']
  assert '-r requirements.txt' in open(os.path.join(ROOT, 'requirements-gpu.txt')).read()


def test_wheel_builds_offline_with_the_package_data(tmp_path):
  # Built from a copy: setuptools leaves build/ and *.egg-info beside the sources.
  src = tmp_path / 'src'
  shutil.copytree(os.path.join(ROOT, 'scalenet'), src / 'scalenet',
                  ignore=shutil.ignore_patterns('__pycache__'))
  for name in ('pyproject.toml', 'README.md'):
    shutil.copy(os.path.join(ROOT, name), src / name)
  out = subprocess.run([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation',
                        '-q', '-w', str(tmp_path), str(src)], capture_output=True, text=True,
                       timeout=300)
  assert out.returncode == 0, out.stderr[-2000:]
  [wheel] = [p for p in os.listdir(tmp_path) if p.endswith('.whl')]
  names = zipfile.ZipFile(tmp_path / wheel).namelist()
  for required in ('scalenet/__init__.py', 'scalenet/models/__init__.py',
                   'scalenet/data/checksums.tsv', 'scalenet/data/builders.py'):
    assert required in names, required
  assert not any(n.startswith(('tests/', 'configs/', 'benchmarks/')) for n in names)
