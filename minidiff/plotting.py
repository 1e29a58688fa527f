"""Figures and GIFs the examples write (matplotlib, imported on use; Agg backend)."""
import numpy as np

from .backend import to_host


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def plot_history(history, path, title="training loss"):
    """Loss per batch (light, smoothed) and train/val loss per epoch -> PNG."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4))
    batch = np.asarray(history.get("batch_loss", []), dtype=np.float64)
    n_epochs = len(history.get("train_loss", []))
    if len(batch) and n_epochs:
        x = np.arange(1, len(batch) + 1) * n_epochs / len(batch)
        w = max(1, len(batch) // 200)
        smooth = np.convolve(batch, np.ones(w) / w, mode="valid")
        ax.plot(x[w - 1:], smooth, color="0.75", lw=0.8, label=f"batch loss (mean of {w})")
    epochs = np.arange(1, n_epochs + 1)
    if n_epochs:
        ax.plot(epochs, history["train_loss"], "o-", ms=2, label="train (epoch mean)")
    if history.get("val_loss"):
        ax.plot(np.arange(1, len(history["val_loss"]) + 1), history["val_loss"], "s-", ms=2, label="validation")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_yscale("log")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def scatter_panels(panels, path, lim=1.6, suptitle=None, size=3.2):
    """Side-by-side 2-D scatters: panels = [(title, points (N, 2))] -> PNG."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(panels), figsize=(size * len(panels), size + 0.3), squeeze=False)
    for ax, (title, pts) in zip(axes[0], panels):
        pts = to_host(pts)
        ax.scatter(pts[:, 0], pts[:, 1], s=2, alpha=0.5)
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.set_aspect("equal")
        ax.set_title(title, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def scatter_gif(frames_left, frames_right, titles, path, lim=1.6, fps=8, hold=8,
                labels=("x_t", "x0_hat")):
    """Animate two (K, N, 2) point sequences side by side -> GIF (Pillow)."""
    plt = _plt()
    from matplotlib.animation import FuncAnimation, PillowWriter
    frames_left, frames_right = to_host(frames_left), to_host(frames_right)
    fig, axes = plt.subplots(1, 2, figsize=(6.4, 3.4))
    dots = []
    for ax, name, pts in zip(axes, labels, (frames_left[0], frames_right[0])):
        dots.append(ax.scatter(pts[:, 0], pts[:, 1], s=2, alpha=0.5))
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(name, fontsize=9)
    header = fig.suptitle(titles[0])
    k = len(frames_left)

    def draw(i):
        i = min(i, k - 1)                        # hold the last frame
        dots[0].set_offsets(frames_left[i])
        dots[1].set_offsets(frames_right[i])
        header.set_text(titles[i])
        return dots

    anim = FuncAnimation(fig, draw, frames=k + hold, blit=False)
    anim.save(path, writer=PillowWriter(fps=fps))
    plt.close(fig)


def plot_curves(curves, path, xlabel, ylabel, title=None, logy=False, invert_x=False):
    """Line plot of named curves: curves = [(label, x, y)] -> PNG."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for label, x, y in curves:
        ax.plot(x, y, "o-", ms=2.5, label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if logy:
        ax.set_yscale("log")
    if invert_x:
        ax.invert_xaxis()
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_sampler_sweep(rows, panels, path, references=(), title=None):
    """Scores against model evaluations, one line per sampler (log x axis) -> PNG.

    rows: dicts with 'sampler', 'model_evaluations' and the scores (a '<key>_std' beside a score is drawn
    as an error bar); panels: [(key, y label, log y)];
    references: [(label, {key: value})] drawn as dashed horizontal lines (e.g. DDPM's T steps).
    """
    plt = _plt()
    fig, axes = plt.subplots(1, len(panels), figsize=(6.0 * len(panels), 4.2), squeeze=False)
    samplers = list(dict.fromkeys(r["sampler"] for r in rows))
    for ax, (key, ylabel, logy) in zip(axes[0], panels):
        for name in samplers:
            pts = sorted((r["model_evaluations"], r[key], r.get(f"{key}_std") or 0.0)
                         for r in rows if r["sampler"] == name and key in r)
            if pts:
                n, y, sd = zip(*pts)
                ax.errorbar(n, y, yerr=sd if any(sd) else None, fmt="o-", ms=3, capsize=2, label=name)
        for label, values in references:
            if key in values:
                ax.axhline(values[key], ls="--", color="0.4", lw=1, label=label)
        ax.set_xscale("log")
        evals = []                                  # tick labels at least 12% apart on the log axis
        for e in sorted({r["model_evaluations"] for r in rows}):
            if not evals or e >= 1.12 * evals[-1]:
                evals.append(e)
        ax.set_xticks(evals, [str(e) for e in evals], fontsize=8)
        ax.tick_params(axis="x", which="minor", bottom=False, labelbottom=False)
        if logy:
            ax.set_yscale("log")
        ax.set_xlabel("model evaluations")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def tile(images, nrow):
    """(N, C, H, W) in [-1, 1] -> one (rows*(H+2), cols*(W+2), C) canvas in [0, 1], 1-pixel white borders."""
    imgs = np.clip((to_host(images) + 1) / 2, 0, 1)
    n, c, h, w = imgs.shape
    ncol = int(np.ceil(n / nrow))
    canvas = np.ones((nrow * (h + 2), ncol * (w + 2), c))
    for i in range(n):
        r, q = divmod(i, ncol)
        canvas[r * (h + 2) + 1: r * (h + 2) + 1 + h, q * (w + 2) + 1: q * (w + 2) + 1 + w] = imgs[i].transpose(1, 2, 0)
    return canvas


def image_grid(images, path, nrow, title=None, row_labels=None):
    """Images (N, C, H, W) in [-1, 1] as a grid with `nrow` rows -> PNG."""
    plt = _plt()
    canvas = tile(images, nrow)
    c, h = canvas.shape[2], images.shape[2]
    ncol = canvas.shape[1] // (images.shape[3] + 2)
    fig, ax = plt.subplots(figsize=(ncol * 0.45 + 0.6, nrow * 0.45 + 0.5))
    ax.imshow(canvas[..., 0] if c == 1 else canvas, cmap="gray" if c == 1 else None, vmin=0, vmax=1)
    ax.set_xticks([])
    if row_labels is not None:
        ax.set_yticks([r * (h + 2) + h / 2 for r in range(nrow)], [str(s) for s in row_labels])
    else:
        ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def image_gif(frames, titles, path, nrow, fps=10, hold=10, scale=3, header=16):
    """Frames (K, N, C, H, W) in [-1, 1] shown as grids, each under its title -> GIF (Pillow)."""
    from PIL import Image, ImageDraw
    images = []
    for f, title in zip(to_host(frames), titles):
        canvas = tile(f, nrow).mean(axis=2)                    # grey (rows, cols)
        grid = Image.fromarray((canvas * 255).astype(np.uint8))
        grid = grid.resize((grid.width * scale, grid.height * scale), Image.NEAREST)
        img = Image.new("L", (grid.width, grid.height + header), color=255)
        img.paste(grid, (0, header))
        ImageDraw.Draw(img).text((4, 2), title, fill=0)
        images.append(img)
    images += [images[-1]] * hold
    images[0].save(path, save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0)
