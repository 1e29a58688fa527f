"""Networks: denoisers (MLP, UNet) and the LeNet-5 judge.

MODELS maps a class name to its class, so a checkpoint can rebuild a model
as MODELS[name](**config).
"""
from .lenet import LeNet5, softmax_cross_entropy
from .mlp import MLP
from .unet import UNet

MODELS = {"MLP": MLP, "UNet": UNet, "LeNet5": LeNet5}

__all__ = ["MLP", "UNet", "LeNet5", "softmax_cross_entropy", "MODELS"]
