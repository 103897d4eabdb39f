"""Matplotlib figures drawn without pyplot (no global backend change)."""

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
