"""C generation for microcontroller firmware: the solver loop from :mod:`edgeode.tableaus`, field
models as C, model files as C arrays, and the firmware projects that :mod:`edgeode.pack` writes.

Torch-free, standard library only (numpy where weights are read). The C and project templates are
package data files under ``edgeode/firmware/templates``.

* :mod:`~edgeode.firmware.solver_c` -- ``generate_solver``: a dependency-free C99 fixed-step RK loop.
* :mod:`~edgeode.firmware.toolchain` -- compiling generated C with the host or ARM compilers.
"""

from edgeode.firmware.solver_c import STATE_TYPES, SolverSource, generate_solver

__all__ = ["STATE_TYPES", "SolverSource", "generate_solver"]
