"""The padded-line layout of the CPU conv kernels, and image lanes: 16 images side by side per point.

    geometry.py    where a batch lies on the lines (Lines), the copies onto and off them
    activation.py  OnLines: an activation that stays on image lanes between layers
    copies.py      copies onto, off and between layouts of lanes
    forward.py     the U-Net's layers on lanes (conv 3x3, conv 4x4 s2, upsample+conv, GroupNorm+SiLU, ResBlock)
    backward.py    their backward passes on lanes

ops.py sends an operation here when its activation is an OnLines; the U-Net decides when one is made.
"""
