"""cnnjax: convolutional networks in JAX, from the operator to ImageNet architectures."""
