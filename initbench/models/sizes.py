"""The CNN's named sizes, torch-free: :mod:`initbench.params` checks params against
them without loading torch."""

#: Kernel size of every conv block's convolution; the k-means patches (``patches.size``)
#: must match conv1's.
KERNEL_SIZE = 3
#: Negative slope of every LeakyReLU.
LEAKY_SLOPE = 0.1
