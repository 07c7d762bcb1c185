"""Helpers shared by the tests (importable as `helpers.*`: pyproject puts tests/ on pytest's path).

    ops_reference  loop-based numpy oracles of the ops (convolution, pooling, LRN)
    convert        random variables and tree comparisons for the weight-conversion tests
    data           IDX writers, encoded images and data configs for the cnnjax.data tests
    tiny_config    a config file for a few-step LeNet-5 run on synthetic data (loop, eval, sweep tests)
"""
