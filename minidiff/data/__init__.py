"""Data: 2-D toy sets and MNIST (IDX files, or the offline 5,000-digit subset)."""
from .mnist import (download_mnist, from_model_range, get_mnist, load_digits_offline, load_idx, load_mnist,
                    to_model_range)
from .toy2d import DATASETS, make_moons, make_s_curve, make_spiral

__all__ = ["make_spiral", "make_moons", "make_s_curve", "DATASETS", "get_mnist", "load_mnist", "load_idx",
           "load_digits_offline", "download_mnist", "to_model_range", "from_model_range"]
