"""An activation that stays on image lanes from layer to layer (CPU kernels).

Every CPU conv kernel reads its input from the padded lines of geometry.py and
writes an output grid. Layer by layer, an NCHW activation would go from a grid
to NCHW (a scatter over the 16 images of a point) and back onto the next
conv's lines (a gather): two copies per layer, and two more per conv in
backward. Between two layers nothing needs the NCHW array, so the U-Net can
hand its layers an `OnLines` instead: the activation as it lies on the image
lanes (V = geometry.LANES images side by side per point), zero at every point
that is not a pixel, ready to be any conv's input.

    OnLines(line, g, shape)    line (C, g.L), g = geometry.lane_lines(B, H, W), shape (B, C, H, W)

The kernels' face (ops.py) takes an OnLines wherever it takes an NCHW array and
returns one in kind: each operation's lanes.py holds its layer on lanes,
copies.py the copies onto and off them (ops.to_lanes, ops.to_array). Only the
model chooses to make one (minidiff.models.UNet); the layers never see the
difference. This module needs no Numba.
"""


class OnLines:
    """An activation (B, C, H, W) on image lanes: line (C, g.L) on Lines g, zeros off the pixels.
    (Not a tuple: a ResBlock reads a tuple as the parts of its input.)"""
    __slots__ = ("line", "g", "shape")

    def __init__(self, line, g, shape):
        self.line, self.g, self.shape = line, g, tuple(shape)

    ndim = 4

    @property
    def dtype(self):
        return self.line.dtype

    def __iadd__(self, other):
        """self += other (an OnLines of the same shape): the lines add, zeros stay zeros."""
        if not isinstance(other, OnLines) or other.shape != self.shape:
            raise TypeError(f"OnLines: can only add an OnLines of shape {self.shape}")
        self.line += other.line
        return self
