"""``edgeode tune``: choose solver, steps and precision for a device from measured accuracy and cost.

* :mod:`~edgeode.tune.heldout` -- the held-out samples accuracy is measured on;
* :mod:`~edgeode.tune.sweep` -- every tableau x steps x precision, measured through the runtime as deployed;
* :mod:`~edgeode.tune.frontier` -- the Pareto frontiers and the pick of a configuration for a target;
* :mod:`~edgeode.tune.apply` -- a bundle that runs the chosen configuration by default;
* :mod:`~edgeode.tune.plot` -- the frontier plot (matplotlib).

Torch-free, like the runtime: a run directory is exported to a bundle first by the command
(:mod:`edgeode.commands.tune`), which is the only part that needs torch.
"""
