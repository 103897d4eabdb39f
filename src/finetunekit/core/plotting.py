"""Matplotlib figures drawn without pyplot (no global backend change)."""

import os

PLOT_HINT = 'Plotting needs matplotlib: pip install "finetunekit[plot]"'


def figure(**kwargs):
    """A matplotlib Figure drawn with the Agg canvas (no pyplot, no global backend change)."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as error:
        raise ImportError(PLOT_HINT) from error
    figure = Figure(**kwargs)
    FigureCanvasAgg(figure)
    return figure


def save_figure(fig, path, **kwargs):
    """Writes a figure to a PNG atomically (see `finetunekit.core.files.atomic_path`); returns the path."""
    from finetunekit.core.files import atomic_path

    path = os.fspath(path)
    with atomic_path(path) as temp:
        fig.savefig(temp, format="png", **kwargs)
    return path
