"""initbench: which weight initialization helps a small CNN on your images?

The library is pure where it can be: losses, model, transfer and training take
tensors and return them. The thin modules in ``stages/`` read params, call the
library and write outputs.
"""

__version__ = "0.1.0"
