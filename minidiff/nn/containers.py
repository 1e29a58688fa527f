"""Containers: chains run children forward in order and backward in reverse."""
from .layer import Layer


class Sequential(Layer):
    """Sequential(l1, l2, ...): y = ln(...l2(l1(x)))."""

    def __init__(self, *layers):
        super().__init__()
        self.layers = list(layers)

    def forward(self, x):
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def backward(self, dy):
        for layer in reversed(self.layers):
            dy = layer.backward(dy)
        return dy


class ConditionalChain(Sequential):
    """Like Sequential, but layers with `takes_cond` also get the conditions.

    forward(x, t[, labels]): x = layer(x, t, labels) for conditional layers,
    x = layer(x) for the rest (as DenoisingDiffusion.jl's ConditionalChain).
    """
    takes_cond = True

    def forward(self, x, *cond):
        for layer in self.layers:
            x = layer.forward(x, *cond) if layer.takes_cond else layer.forward(x)
        return x


class ConditionalSum(Layer):
    """x, cond -> f(x) + g(*cond): the parallel-sum block that injects t (and labels).

    backward: g's parameters get dy (their input is an integer condition), dx = f'(dy).
    """
    takes_cond = True

    def __init__(self, f, g):
        super().__init__()
        self.f, self.g = f, g

    def forward(self, x, *cond):
        g_in = cond if self.g.takes_cond else cond[:1]
        return self.f.forward(x) + self.g.forward(*g_in)

    def backward(self, dy):
        self.g.backward(dy)
        return self.f.backward(dy)
