"""Input components that hand the value to the handler exactly as sent.

Gradio's own checks run first otherwise and answer a string in a slider with "Could not preprocess
input component ... TypeError", or a range error that does not name the field. The handlers check
every value themselves (core.seeds, core.limits) and name the field in one line.

(Instances are patched rather than subclassed: Gradio writes a .pyi file beside the source of
every component subclass it sees.)
"""
from __future__ import annotations

from typing import TypeVar

import gradio as gr

C = TypeVar("C", bound=gr.components.Component)


def as_sent(component: C) -> C:
    component.preprocess = lambda payload: payload
    return component


def Number(**kwargs) -> gr.Number:  # noqa: N802 - reads like the component it makes
    return as_sent(gr.Number(**kwargs))


def Slider(*args, **kwargs) -> gr.Slider:  # noqa: N802
    return as_sent(gr.Slider(*args, **kwargs))


def Radio(*args, **kwargs) -> gr.Radio:  # noqa: N802
    return as_sent(gr.Radio(*args, **kwargs))


def Dropdown(*args, **kwargs) -> gr.Dropdown:  # noqa: N802
    return as_sent(gr.Dropdown(*args, **kwargs))
