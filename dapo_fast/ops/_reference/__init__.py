"""Pure-PyTorch references: the specification of every op, differentiable, and a backend."""
