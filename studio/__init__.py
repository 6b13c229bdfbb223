"""Studio: a desktop image studio for designers, built on diffusion models."""

__version__ = "0.1.0"
