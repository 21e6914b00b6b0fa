"""initbench: which weight initialization helps a small CNN on your images?

The library is pure where it can be: losses, model, transfer and training take
tensors and return them. The thin modules in ``stages/`` read params, call the
library and write outputs.
"""

import time

__version__ = "0.1.0"

#: When the library was first imported; a stage's last line (:func:`initbench.core.cli.run`)
#: gives its wall time from here, loading torch included. Never part of any output file.
STARTED = time.perf_counter()
