from scalenet import cpu_devices

COUNT = '--xla_force_host_platform_device_count'
OFF = '--xla_cpu_multi_thread_eigen=false'


def test_simulated_devices_get_single_threaded_eigen():
  assert cpu_devices.safe_xla_flags(f'{COUNT}=4') == f'{COUNT}=4 {OFF}'
  assert cpu_devices.safe_xla_flags(f'--xla_dump_to=/tmp/d {COUNT}=2') == (
      f'--xla_dump_to=/tmp/d {COUNT}=2 {OFF}')
  assert cpu_devices.safe_xla_flags(f'{COUNT}=1 {COUNT}=2').endswith(OFF)  # the last one counts


def test_other_flags_are_left_alone():
  for flags in ('', '--xla_dump_to=/tmp/d', f'{COUNT}=1', f'{COUNT}=2 {COUNT}=1',
                f'{COUNT}=4 --xla_cpu_multi_thread_eigen=true', f'{COUNT}=4 {OFF}'):
    assert cpu_devices.safe_xla_flags(flags) == flags, flags


def test_apply_amends_the_environment():
  env = {'XLA_FLAGS': f'{COUNT}=2'}
  assert cpu_devices.apply(env) and env['XLA_FLAGS'] == f'{COUNT}=2 {OFF}'
  assert not cpu_devices.apply(env) and env['XLA_FLAGS'] == f'{COUNT}=2 {OFF}'
  empty = {}
  assert not cpu_devices.apply(empty) and empty['XLA_FLAGS'] == ''
