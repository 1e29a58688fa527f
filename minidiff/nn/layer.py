"""The layer protocol every network in minidiff is built from.

    y  = layer.forward(x, *cond)   # keeps in the layer what backward needs
    dx = layer.backward(dy)        # returns d loss / d x, ADDS into layer.grads

`layer.params` and `layer.grads` are dicts with the same keys and shapes;
`layer.buffers` holds non-trainable arrays (e.g. a sinusoidal table) that move
with the layer between devices and dtypes. Child layers are found by looking at
the attributes: a `Layer`, or a list/tuple of them. Parameters are always
updated in place, so a layer never caches anything derived from them across
calls; `flatten_parameters` relies on that to make every parameter a view into
one contiguous vector, which the optimisers, the EMA and gradient clipping then
treat as a single array.
"""
import numpy as np

from ..backend import check_float_dtype, device_module, get_xp


class Layer:
    takes_cond = False  # True: forward(x, *cond) receives the conditioning (t, labels)

    def __init__(self):
        self.params = {}
        self.grads = {}
        self.buffers = {}
        self._flat = None

    # --- the protocol -----------------------------------------------------
    def forward(self, x, *cond):
        raise NotImplementedError

    def backward(self, dy):
        raise NotImplementedError

    def __call__(self, x, *cond):
        return self.forward(x, *cond)

    def add_param(self, name, value):
        """Register a trainable array and its zero gradient."""
        self.params[name] = value
        self.grads[name] = get_xp(value).zeros_like(value)

    # --- the tree ---------------------------------------------------------
    def children(self):
        """[(name, layer)] of the direct sub-layers, in attribute order."""
        out = []
        for name, v in vars(self).items():
            if isinstance(v, Layer):
                out.append((name, v))
            elif isinstance(v, (list, tuple)) and v and all(isinstance(c, Layer) for c in v):
                out.extend((f"{name}.{i}", c) for i, c in enumerate(v))
        return out

    def named_layers(self, prefix=""):
        """Yield (dotted name, layer) for this layer and every descendant, once each."""
        seen = set()

        def walk(layer, name):
            if id(layer) in seen:
                return
            seen.add(id(layer))
            yield name, layer
            for child_name, child in layer.children():
                yield from walk(child, f"{name}.{child_name}" if name else child_name)

        yield from walk(self, prefix)

    def named_parameters(self):
        """Yield (dotted name, param, grad) over the whole tree."""
        for lname, layer in self.named_layers():
            for key in layer.params:
                name = f"{lname}.{key}" if lname else key
                yield name, layer.params[key], layer.grads[key]

    def num_params(self):
        return int(sum(p.size for _, p, _ in self.named_parameters()))

    def zero_grad(self):
        if self._flat is not None:
            self._flat[1].fill(0)
            return
        for _, _, g in self.named_parameters():
            g.fill(0)

    # --- one flat vector for the optimiser -------------------------------
    def flatten_parameters(self):
        """Move every parameter and gradient into one contiguous vector each.

        Returns (theta, grad), both (P,). Each layer's params/grads entries
        become reshaped views into them, so an in-place update of `theta`
        updates every layer at once.
        """
        slots = [(layer, key) for _, layer in self.named_layers() for key in layer.params]
        if not slots:
            raise ValueError("flatten_parameters: the model has no parameters")
        first = slots[0][0].params[slots[0][1]]
        xp, dtype = get_xp(first), first.dtype
        total = sum(layer.params[key].size for layer, key in slots)
        theta = xp.empty(total, dtype=dtype)
        grad = xp.zeros(total, dtype=dtype)
        offset = 0
        for layer, key in slots:
            p = layer.params[key]
            if p.dtype != dtype:
                raise TypeError(f"flatten_parameters: mixed dtypes ({p.dtype} vs {dtype})")
            n = p.size
            theta[offset:offset + n] = p.reshape(-1)
            grad[offset:offset + n] = layer.grads[key].reshape(-1)
            layer.params[key] = theta[offset:offset + n].reshape(p.shape)
            layer.grads[key] = grad[offset:offset + n].reshape(p.shape)
            offset += n
        for _, layer in self.named_layers():
            layer._flat = None
        self._flat = (theta, grad)
        return theta, grad

    def flat(self):
        """(theta, grad) as flat vectors, flattening on first use."""
        if self._flat is None:
            return self.flatten_parameters()
        return self._flat

    # --- devices and dtypes ----------------------------------------------
    def _convert(self, fn):
        was_flat = self._flat is not None
        for _, layer in self.named_layers():
            layer.params = {k: fn(v) for k, v in layer.params.items()}
            layer.grads = {k: get_xp(v).zeros_like(v) for k, v in layer.params.items()}
            layer.buffers = {k: fn(v) for k, v in layer.buffers.items()}
            layer._flat = None
        if was_flat:
            self.flatten_parameters()
        return self

    def astype(self, dtype):
        """Cast params, grads and floating buffers to `dtype` (in place; returns self)."""
        dt = check_float_dtype(dtype)
        return self._convert(lambda a: a.astype(dt) if a.dtype.kind == "f" else a)

    def to(self, device):
        """Move params, grads and buffers to 'cpu' or 'cuda' (in place; returns self)."""
        xp = device_module(device)
        if xp is np:
            from ..backend import to_host
            return self._convert(to_host)
        return self._convert(xp.asarray)

    @property
    def dtype(self):
        for _, p, _ in self.named_parameters():
            return p.dtype
        return np.dtype(np.float32)

    # --- weights in and out (checkpoints, porting) -----------------------
    def state_dict(self):
        """{dotted name: param array} (the live arrays, not copies)."""
        return {name: p for name, p, _ in self.named_parameters()}

    def load_state_dict(self, state):
        """Copy arrays into the parameters, in place; names and shapes must match."""
        own = self.state_dict()
        missing = sorted(set(own) - set(state))
        extra = sorted(set(state) - set(own))
        if missing or extra:
            raise ValueError(f"load_state_dict: missing {missing[:5]}, unexpected {extra[:5]}")
        for name, p in own.items():
            v = state[name]
            if tuple(v.shape) != tuple(p.shape):
                raise ValueError(f"load_state_dict: {name} has shape {tuple(v.shape)}, "
                                 f"expected {tuple(p.shape)}")
            p[...] = get_xp(p).asarray(v, dtype=p.dtype)

    # --- printing ---------------------------------------------------------
    def extra_repr(self):
        return ""

    def __repr__(self):
        kids = self.children()
        head = f"{type(self).__name__}({self.extra_repr()}"
        if not kids:
            return head + ")"
        rows = [head]
        for name, child in kids:
            body = repr(child).replace("\n", "\n  ")
            rows.append(f"  ({name}): {body}")
        return "\n".join(rows) + "\n)"


def check_batch(x, owner, name="x", rows=1):
    """x unless it holds no sample: ValueError naming the layer, the argument and the shape when
    any of its first `rows` axes (the batch, or every leading axis of a Dense input) is 0."""
    shape = tuple(x.shape)
    if 0 in shape[:rows]:
        raise ValueError(f"{owner}: {name} must be a batch of B >= 1 samples, got an empty batch {shape}")
    return x


def index_out_of_range(a, high):
    """Whether the integer NumPy array `a` holds a value outside [0, high], in one reduction:
    a signed array is read as its unsigned twin, where a negative value becomes a huge one."""
    if not a.size:
        return False
    if a.dtype.kind == "i" and a.dtype.isnative:
        return bool(a.view(np.dtype(f"u{a.dtype.itemsize}")).max() > high)
    return bool(a.min() < 0 or a.max() > high)


def positive_ints(owner, **values):
    """The values as ints, or ValueError naming the layer and the arguments unless all are positive integers."""
    ok = all(not isinstance(v, bool) and isinstance(v, (int, np.integer)) and v >= 1 for v in values.values())
    if not ok:
        raise ValueError(f"{owner}: {' and '.join(values) if len(values) < 3 else ', '.join(values)} "
                         f"must be {'a positive integer' if len(values) == 1 else 'positive integers'}, "
                         f"got {', '.join(repr(v) for v in values.values())}")
    return [int(v) for v in values.values()]


def uniform_init(rng, shape, fan_in, dtype):
    """U(-1/sqrt(fan_in), 1/sqrt(fan_in)): PyTorch's default for Linear/Conv."""
    bound = 1.0 / np.sqrt(fan_in)
    return rng.uniform(-bound, bound, size=shape).astype(dtype)
