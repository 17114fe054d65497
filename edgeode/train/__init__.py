"""Training side (PyTorch): vector fields, fixed-step solvers, the adjoint method, models, data, trainer.

Modules (import what you need; importing :mod:`edgeode.train` itself loads nothing heavy):

* :mod:`~edgeode.train.solver` -- ``solve``, ``odeint``, ``rk_step``: fixed-step RK from a tableau.
* :mod:`~edgeode.train.adjoint` -- ``odeint_adjoint``: the adjoint method (Chen et al. 2018, Alg. 1).
* :mod:`~edgeode.train.fields`, :mod:`~edgeode.train.models` -- ``ModelConfig``, ``build_model``:
  ODE-Net, RK-Net, ResNet, VGG and the spiral dynamics model.
* :mod:`~edgeode.train.data` -- ``load_dataset``: spiral, digits, MNIST IDX (no downloads).
* :mod:`~edgeode.train.checkpoint` -- ``TrainConfig``, ``save_run``, ``load_run``: run directories.
* :mod:`~edgeode.train.trainer` -- ``train``: the training loop (single process or torchrun/DDP,
  see :mod:`~edgeode.train.distributed`).
"""
