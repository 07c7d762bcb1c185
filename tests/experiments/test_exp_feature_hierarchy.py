"""experiments/feature_hierarchy: the RMS radius it reports for an ERF."""

import numpy as np


def test_rms_radius_of_a_uniform_square_is_the_discrete_uniform_deviation(experiment_module):
    run = experiment_module("feature_hierarchy/run.py")
    m = np.zeros((15, 15))
    m[2:13, 2:13] = 1.0  # side 11 around pixel 7: variance (11^2 - 1) / 12 = 10 per axis
    assert run.rms_radius(m, (7.0, 7.0)) == np.sqrt(10.0)
    point = np.zeros((5, 5))
    point[1, 3] = 2.0
    assert run.rms_radius(point, (1.0, 1.0)) == np.sqrt(2.0)  # distance 2 along one axis only
