"""The padded-line layout of the CPU conv kernels, and image lanes: 16 images side by side per point.

    geometry.py    where a batch lies on the lines (Lines), the copies onto and off them
    activation.py  OnLines: an activation that stays on image lanes between layers
    copies.py      copies onto and off the lanes, channel parts, zeroing what is not a pixel

Each operation's layers on lanes live in its own folder (conv/lanes.py, upconv/lanes.py,
groupnorm/lanes.py, resblock/lanes.py); ops.py sends an operation there when its activation
is an OnLines, and the U-Net decides when one is made.
"""
