"""Fixed filter bases of the steerable and DISCO models (numpy, built once).

  hermite     the study's Hermite-Gaussian basis and the published SESN basis
  log_radial  the study's and the published SS-CNN's log-radial harmonics
  disco       DISCO's least-squares basis (and its on-disk cache)
"""
