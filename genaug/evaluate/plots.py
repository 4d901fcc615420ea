"""PNG plots of an evaluation (matplotlib, Agg backend)."""

from __future__ import annotations

from pathlib import Path


def _save(fig, path: Path) -> str:
    import matplotlib.pyplot as plt

    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110, bbox_inches="tight")
    plt.close(fig)
    tmp.replace(path)
    return path.name


def png_bytes(fig, dpi: int = 100) -> bytes:
    """The figure as PNG bytes (closed afterwards), for images embedded in the report."""
    import io

    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _errorbar(ax, settings: list[dict], label: str, **kw) -> None:
    """Mean test accuracy against r with 95% interval bars."""
    acc = [s["test_acc"]["mean"] for s in settings]
    err = [[a - (s["test_acc"]["lo"] if s["test_acc"]["lo"] is not None else a) for a, s in zip(acc, settings)],
           [(s["test_acc"]["hi"] if s["test_acc"]["hi"] is not None else a) - a for a, s in zip(acc, settings)]]
    ax.errorbar([s["mix"] for s in settings], acc, yerr=err, marker="o", capsize=4, label=label, **kw)


def write_plots(metrics: dict, out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    settings, classes = metrics["settings"], metrics["classes"]
    written = []

    fig, ax = plt.subplots(figsize=(5, 3.5))
    _errorbar(ax, settings, "strong real-only (r=0) + synthetic")
    oracle = (metrics.get("oracle") or {}).get("settings")
    if oracle:
        _errorbar(ax, settings[:1] + oracle, "strong real-only + held-out real (oracle)", linestyle="--")
    naive = (metrics.get("baselines") or {}).get("naive")
    if naive:
        ax.axhline(naive["test_acc"]["mean"], color="grey", lw=0.8, linestyle=":", label="naive real-only")
    ax.legend(fontsize=7)
    ax.set_xlabel("share r of extra images (0 = strong real-only, 1 = CAS)")
    ax.set_ylabel("test accuracy (mean, 95% CI)")
    ax.set_title(f"{metrics['model']}, {len(metrics['seeds'])} seeds")
    ax.grid(alpha=0.3)
    written.append(_save(fig, out / "accuracy_vs_mix.png"))

    gains = [s for s in settings if "per_class_gain" in s]
    if gains:
        fig, ax = plt.subplots(figsize=(max(5, 0.5 * len(classes) * len(gains)), 3.5))
        width = 0.8 / len(gains)
        for i, s in enumerate(gains):
            ax.bar([c + i * width for c in range(len(classes))], s["per_class_gain"], width=width, label=f"r={s['mix']:g}")
        ax.axhline(0, color="black", lw=0.8)
        ax.set_xticks([c + 0.4 - width / 2 for c in range(len(classes))], [c[:10] for c in classes], rotation=45, ha="right")
        ax.set_ylabel("per-class accuracy gain")
        ax.legend()
        written.append(_save(fig, out / "per_class_gain.png"))

    for s in settings:
        fig, ax = plt.subplots(figsize=(4.5, 4))
        ax.imshow(s["confusion"], cmap="Blues")
        ax.set_xticks(range(len(classes)), [c[:8] for c in classes], rotation=90)
        ax.set_yticks(range(len(classes)), [c[:8] for c in classes])
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(f"confusion, r={s['mix']:g} (summed over seeds)")
        written.append(_save(fig, out / f"confusion_r{s['mix']:g}.png"))
    return written
