"""Fixtures of the napari plugin's tests, which run without a screen.

Qt draws offscreen (set here, before any test creates the Qt application). napari's canvas also
needs OpenGL, which Qt's offscreen platform only has with an X server to borrow it from:
pytest-xvfb starts Xvfb when it is installed (``apt-get install xvfb``); without it the tests
of a whole viewer skip (:func:`opengl`), and the readers and the widget are tested without one.
"""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

#: Where the tests' stack is cut from the small preset's first stack: its neuron's middle.
CROP = (slice(None), slice(32, 96), slice(32, 96))


@pytest.fixture
def opengl(qapp):
    """Skip unless Qt can make an OpenGL context, which napari's canvas draws with."""
    from qtpy.QtGui import QOpenGLContext

    if not QOpenGLContext().create():
        pytest.skip(f"no OpenGL context on Qt's {qapp.platformName()} platform (no X server: "
                    "install Xvfb, which pytest-xvfb then starts), so no napari canvas")


@pytest.fixture(scope="session")
def small_stack():
    """A 48x64x64 crop of the small synthetic preset's first stack and its (z, y, x) spacing."""
    from dineuro.data.synth import PRESETS, synthesize_stack

    neuron = synthesize_stack(PRESETS["small"], 0)
    return neuron.image[CROP], neuron.spacing
