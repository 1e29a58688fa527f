"""Activations that stay on image lanes from layer to layer (CPU kernels).

Every CPU conv kernel reads its input from the padded lines of lines.py and
writes an output grid. Layer by layer, each activation goes from a grid to
NCHW (from_lines, a scatter over the 16 images of a point) and back onto the
next conv's lines (to_lines, a gather): two copies per layer, and two more
per conv in backward. Between two layers nothing needs the NCHW array, so
the U-Net can hand its layers an `OnLines` instead: the activation as it
lies on the image lanes (V = lines.LANES images side by side per point),
zero at every point that is not a pixel, ready to be any conv's input.

    OnLines(line, g, shape)    line (C, g.L), g = lines.lane_lines(B, H, W), shape (B, C, H, W)

A layer given an OnLines returns one (on_lines_cpu.py holds their kernels:
each conv's grid goes onto fresh lines with its bias; GroupNorm+SiLU and the
ResBlock's residual add write the lines directly), so the NCHW array is built
only at the network's end (to_array) and around the attention. With grad, each
layer keeps its input OnLines and its backward takes and returns OnLines too
(on_lines_grad_cpu.py). This module needs no Numba: layers test
`isinstance(x, OnLines)`; only a model that checked kernels.lines_flow(x) makes one.
"""


class OnLines:
    """An activation (B, C, H, W) on image lanes: line (C, g.L) on Lines g, zeros off the pixels.
    (Not a tuple: a ResBlock reads a tuple as the parts of its input.)"""
    __slots__ = ("line", "g", "shape")

    def __init__(self, line, g, shape):
        self.line, self.g, self.shape = line, g, tuple(shape)

    def __iadd__(self, other):
        """self += other (an OnLines of the same shape): the lines add, zeros stay zeros."""
        if not isinstance(other, OnLines) or other.shape != self.shape:
            raise TypeError(f"OnLines: can only add an OnLines of shape {self.shape}")
        self.line += other.line
        return self

    def to_array(self):
        """The activation as an NCHW array (B, C, H, W)."""
        from .on_lines_cpu import lines_to_image
        return lines_to_image(self)

    def via_array(self, fn):
        """OnLines of fn(the NCHW array): for a layer step that has no version on lines."""
        from .on_lines_cpu import image_to_lines
        return image_to_lines(fn(self.to_array()))
