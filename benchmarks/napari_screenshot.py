"""The README's picture of dineuro in napari: a synthetic stack predicted and traced by the widget.

Opens a viewer on a stack of the small preset (a grown neuron) at its spacing, docks the
"Predict and trace" widget from the plugin menu's entry, runs it with the default model, and
saves the window (the 3D canvas, the layer list and the widget). napari's canvas draws with
OpenGL in a window, so without a screen it needs an X server such as Xvfb, and the libraries of
Qt's xcb platform (on Debian: ``apt-get install xvfb libxcb-cursor0 libxcb-icccm4
libxcb-keysyms1``)::

    xvfb-run -a -s "-screen 0 1600x1000x24" python benchmarks/napari_screenshot.py \\
        -o docs/napari_widget.png

Without a display, Qt draws offscreen, which has no OpenGL: the picture is then the widget
alone after the run, and the script says so.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

if not os.environ.get("DISPLAY"):
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import napari  # noqa: E402
from napari.components import ViewerModel  # noqa: E402
from qtpy.QtCore import QEventLoop  # noqa: E402
from qtpy.QtGui import QOpenGLContext  # noqa: E402

from dineuro.data.synth import PRESETS, synthesize_stack  # noqa: E402
from dineuro.napari._widget import TraceWidget  # noqa: E402

#: The window's size in pixels; the map half seen through, so the stack shows beneath it.
WINDOW = (1280, 760)
PROBABILITY_OPACITY = 0.5


def run_widget(widget: TraceWidget) -> None:
    """Run the widget and return when its worker is done and the layers are added."""
    loop = QEventLoop()
    worker = widget.run()
    worker.finished.connect(loop.quit)
    loop.exec()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--out", type=Path, required=True, help="PNG to write")
    parser.add_argument("--preset", default="small", choices=sorted(PRESETS))
    parser.add_argument("--index", type=int, default=1, help="which stack of the preset")
    args = parser.parse_args()
    neuron = synthesize_stack(PRESETS[args.preset], args.index)
    napari.qt.get_qapp()
    if not QOpenGLContext().create():
        viewer = ViewerModel()
        viewer.add_image(neuron.image, name=neuron.name, scale=neuron.spacing)
        widget = TraceWidget(viewer)
        run_widget(widget)
        widget.native.grab().save(str(args.out))
        print(f"no OpenGL context (no X server?), so no canvas: wrote the widget alone to "
              f"{args.out}")
        return
    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(*WINDOW)
    viewer.add_image(neuron.image, name=neuron.name, scale=neuron.spacing, rendering="mip")
    _, widget = viewer.window.add_plugin_dock_widget("dineuro", "Predict and trace")
    run_widget(widget)
    viewer.layers[f"{neuron.name} probability"].opacity = PROBABILITY_OPACITY
    viewer.layers[f"{neuron.name} mask"].visible = False  # listed; drawn, it hides the map
    viewer.dims.ndisplay = 3  # looking down z: the image's maximum projection and the trace
    viewer.screenshot(str(args.out), canvas_only=False, flash=False)
    viewer.close()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
