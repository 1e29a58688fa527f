"""How many numbers a model allocates, bounded from its config alone (without building it).

A checkpoint's model_config decides how big a model load_checkpoint builds; checkpoint.py
compares these bounds with the weights the file holds before it builds anything. Each bound
counts the weights and the buffers (the sinusoid tables) and never undercounts
(tests/checkpoint/test_hostile_checkpoints.py checks it against built models).
"""


def mlp_numbers(a):
    """MLP: L layers of Dense(in or d, d) + Dense(d, d) + a (T, d) sinusoid table, then Dense(d, in)."""
    i, d, T, L = a["in_dim"], a["d_hid"], a["num_timesteps"], a["num_layers"]
    return L * (max(i, d) * d + d * d + 2 * d + T * d) + d * i + i


def unet_numbers(a):
    """UNet: every conv counted at the widest level C = mc * max(multipliers)."""
    mc, i, T, nb, L = (a["model_channels"], a["in_channels"], a["num_timesteps"], a["num_blocks_per_level"],
                       len(a["channel_multipliers"]))
    C, E, K = mc * max(a["channel_multipliers"]), 4 * mc, a["num_classes"] or 0
    block = 45 * C * C + E * C + 10 * C        # two 3x3 convs (in <= 2C) + a 3x3 skip, norms, emb Dense
    return ((2 * L * nb + 2) * block + L * (25 * C * C + 2 * C) + 15 * C * C + 11 * C
            + T * mc + mc * E + E * E + 2 * E + (K + 1) * E + 18 * i * C + 2 * C + 2 * i)


def lenet_numbers(a):
    """LeNet5: a fixed body of 60,856 numbers and an 84 -> num_classes head."""
    return 61_000 + 85 * a["num_classes"]


MODEL_NUMBERS = {"MLP": mlp_numbers, "UNet": unet_numbers, "LeNet5": lenet_numbers}
