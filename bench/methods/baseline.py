"""Plain class-conditional training: L = ||eps - eps_theta(x_t, t, c)||^2 (Ho et al. 2020, Eq. 14).

The class enters as one cross-attention token from a learned embedding table (the offline default;
Nair 2024's code uses frozen CLIP text features of the class name through a trainable Linear).
"""
from bench.methods.base import ConditioningMethod


class Baseline(ConditioningMethod):
    """Class-conditional epsilon-prediction, the reference every method is tested against."""

    name = "baseline"
    paper = "Ho et al. 2020, Denoising Diffusion Probabilistic Models (Eq. 14)"
