"""Training side (PyTorch): vector fields, fixed-step solvers, the adjoint method, models, data, trainer."""
