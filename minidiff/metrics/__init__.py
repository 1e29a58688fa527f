"""Sample quality: spiral distance (2-D) and Frechet LeNet Distance (images)."""
from .frechet import fld, frechet_distance, gaussian_fit, guided_accuracy
from .spiral import distance_per_timestep, mean_spiral_distance, spiral_distance

__all__ = ["spiral_distance", "mean_spiral_distance", "distance_per_timestep",
           "frechet_distance", "gaussian_fit", "fld", "guided_accuracy"]
