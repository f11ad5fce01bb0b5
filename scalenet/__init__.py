"""scalenet: scale-equivariant convolutional networks in JAX."""

from scalenet.deform import deform_conv
from scalenet.equivariance import (assert_equivariant, equivariance_curve, equivariance_error,
                                   layerwise_deltas, layerwise_equivariance)
from scalenet.scale_convolution import scale_conv, scale_pool
from scalenet.scale_space import bilinear_lift, gaussian_lift, match_sizes
from scalenet.representations import scale_space_transform
from scalenet.transforms import RescaleSpec, rescale

__all__ = [
    'RescaleSpec', 'assert_equivariant', 'bilinear_lift', 'deform_conv', 'equivariance_curve',
    'equivariance_error', 'gaussian_lift', 'layerwise_deltas', 'layerwise_equivariance',
    'match_sizes',
    'rescale', 'scale_conv', 'scale_pool', 'scale_space_transform',
]
