"""The figures and GIFs the examples write: files exist, frames and sizes are right."""
import numpy as np
from PIL import Image

from minidiff import plotting


def test_pngs_and_gifs(tmp_path):
    rng = np.random.default_rng(0)
    history = dict(train_loss=[1.0, 0.5, 0.4], val_loss=[1.1, 0.6, 0.5], batch_loss=list(rng.random(30) + 0.3))
    plotting.plot_history(history, tmp_path / "loss.png")
    plotting.scatter_panels([("a", rng.standard_normal((50, 2))), ("b", rng.standard_normal((50, 2)))],
                            tmp_path / "scatter.png")
    plotting.plot_curves([("x_t", np.arange(5), rng.random(5))], tmp_path / "curve.png", "t", "d", logy=True)
    plotting.image_grid(rng.uniform(-1, 1, (20, 1, 8, 8)), tmp_path / "grid.png", nrow=2, row_labels=[0, 1])
    for name in ("loss", "scatter", "curve", "grid"):
        with Image.open(tmp_path / f"{name}.png") as im:
            assert im.width > 100 and im.height > 100
    plotting.scatter_gif(rng.standard_normal((4, 30, 2)), rng.standard_normal((4, 30, 2)),
                         ["t=3", "t=2", "t=1", "t=0"], tmp_path / "rev.gif", hold=2)
    plotting.image_gif(rng.uniform(-1, 1, (3, 6, 1, 8, 8)), ["t = 2", "t = 1", "t = 0"], tmp_path / "img.gif",
                       nrow=2, hold=0)
    with Image.open(tmp_path / "img.gif") as im:
        assert im.n_frames == 3 and im.size == (3 * (3 * 10), 2 * 10 * 3 + 16)
    with Image.open(tmp_path / "rev.gif") as im:
        assert im.n_frames >= 4


def test_tile_layout():
    imgs = np.stack([np.full((1, 2, 2), v) for v in (-1.0, 1.0, 0.0)])     # (3, 1, 2, 2)
    canvas = plotting.tile(imgs, nrow=1)                                    # (4, 12, 1)
    assert canvas.shape == (4, 12, 1)
    assert canvas[1, 1, 0] == 0.0 and canvas[1, 5, 0] == 1.0 and canvas[1, 9, 0] == 0.5
    assert canvas[0].min() == 1.0                                           # white border


def test_sampler_sweep_plot_draws_spreads_and_keeps_tick_labels_apart(tmp_path, monkeypatch):
    from matplotlib.figure import Figure
    saved = []
    real_savefig = Figure.savefig
    monkeypatch.setattr(Figure, "savefig", lambda fig, path, **kw: (saved.append(fig), real_savefig(fig, path, **kw)))
    rows = [dict(sampler="heun", model_evaluations=9, fld=9.0, fld_std=1.0, guided_accuracy=0.9),
            dict(sampler="heun", model_evaluations=19, fld=8.0, fld_std=0.5, guided_accuracy=0.95),
            dict(sampler="ddim", model_evaluations=5, fld=20.0, fld_std=None, guided_accuracy=0.8),
            dict(sampler="ddim", model_evaluations=20, fld=7.0, fld_std=None, guided_accuracy=0.97),
            dict(sampler="ddim", model_evaluations=50, fld=6.0, fld_std=None, guided_accuracy=0.98)]
    plotting.plot_sampler_sweep(rows, [("fld", "FLD", True), ("guided_accuracy", "right", False)],
                                tmp_path / "sweep.png", references=[("DDPM", dict(fld=5.0))])
    with Image.open(tmp_path / "sweep.png") as im:
        assert im.width > 100
    ax_fld, ax_acc = saved[0].axes
    assert [t.get_text() for t in ax_fld.get_xticklabels()] == ["5", "9", "19", "50"]    # 20 is too close to 19
    bars = {c.get_label(): c.has_yerr for c in ax_fld.containers}
    assert bars == {"heun": True, "ddim": False}                # a spread only where the rows give one
    assert not any(c.has_yerr for c in ax_acc.containers)       # no guided_accuracy_std in the rows
