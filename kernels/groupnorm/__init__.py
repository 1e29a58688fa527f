"""groupnorm: see kernels/__init__.py and docs/kernels.md."""
