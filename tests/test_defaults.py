"""One table of every generation field's default, range, choices and label (the request's knobs), and every
face that shows or checks them agreeing with it: the CLI's options and help, `validate()`, the settings file
and the window's widgets."""

from __future__ import annotations

import dataclasses
import re

import pytest
from PIL import Image

from studio.cli import OPTION_OF, build_parser
from studio.recipe.request import GenerationRequest, RequestError, default, knobs

RANGED = [n for n, k in knobs().items() if k.low is not None]
CHOICES = [n for n, k in knobs().items() if k.choices]


def _generate_options() -> dict[str, object]:
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    return {a.dest: a for a in sub.choices["generate"]._actions}


# What a field needs beside it to mean anything (a redraw repaints a picture it is given).
CONTEXT = {"redraw_scale": lambda: {"init_image": Image.new("RGB", (16, 16))}}


@pytest.mark.parametrize("name", RANGED)
def test_validate_takes_exactly_the_range_the_table_gives(name):
    k = knobs()[name]
    kind = type(default(name)) if default(name) is not None else float if k.step % 1 else int  # as the CLI reads it
    low = k.low + k.step if k.low_open else k.low
    around = CONTEXT.get(name, dict)()
    for ok in (low, k.high):
        GenerationRequest(prompt="x", **around, **{name: kind(ok)}).validate()
    for bad in (k.low if k.low_open else k.low - k.step, k.high + k.step):
        with pytest.raises(RequestError, match=re.escape(k.name_in_messages)):
            GenerationRequest(prompt="x", **around, **{name: kind(bad)}).validate()


@pytest.mark.parametrize("name", [*RANGED, *CHOICES])
def test_the_cli_offers_each_field_with_the_table_s_range_choices_and_default(name):
    k = knobs()[name]
    option = _generate_options()[OPTION_OF.get(name, name)]
    if k.choices:
        assert tuple(option.choices) == k.choices
    else:
        low, high = (int(v) if float(v).is_integer() else v for v in (k.low, k.high))
        assert f"{low}..{high}" in option.help
    value = default(name)
    if value not in (None, "") and name not in ("cfg", "seed", "steps", "width", "height"):
        assert f"default: {value}" in option.help


def test_every_request_default_is_the_dataclass_s_and_the_settings_agree():
    from studio.ui.settings import SETTINGS

    settings = {s.name: s.default for s in SETTINGS}
    same_name = {"batch": "batch_size"}
    for setting, value in settings.items():
        field = same_name.get(setting, setting)
        if field in knobs() and setting != "prompt":  # the window starts with an example prompt, not ""
            stored = default(field) if default(field) is not None else 0  # the settings file writes None as 0
            assert value == stored, setting
    assert default("steps") == next(f.default for f in dataclasses.fields(GenerationRequest) if f.name == "steps")


def test_the_window_s_widgets_take_the_table_s_ranges_and_choices(qtbot):
    from studio.ui.controls import GenerationControls

    c = GenerationControls()
    qtbot.addWidget(c)
    k = knobs()
    for name, widget in (("steps", c.steps.spin), ("cfg", c.cfg.spin), ("variation_strength", c.variation.spin),
                         ("batch_size", c.batch), ("padding", c.padding), ("mask_grow", c.mask_grow),
                         ("mask_feather", c.mask_feather), ("width", c.width_spin)):
        assert (widget.minimum(), widget.maximum()) == (k[name].low, k[name].high), name
    assert c.strength.spin.minimum() == pytest.approx(k["strength"].low + k["strength"].step)  # above 0
    assert tuple(c.scheduler.itemText(i) for i in range(c.scheduler.count())) == k["scheduler"].choices
    assert tuple(c.outpaint_fill.itemText(i) for i in range(c.outpaint_fill.count())) == k["outpaint_fill"].choices


def test_run_on_offers_the_backend_kinds_and_starts_at_the_servers_settings_default(qtbot):
    from studio.backends.base import BackendKind
    from studio.backends.settings import ServerSettings
    from studio.recipe.request import BACKENDS
    from studio.ui.run_on import RunOn
    from studio.ui.server_models import ServerWatch

    run_on = RunOn(None, ServerWatch(None))
    selector = run_on.selector
    qtbot.addWidget(selector)
    assert [selector.itemData(k) for k in range(selector.count())] == [k.value for k in BackendKind]
    assert selector.currentData() == ServerSettings().default.value
    assert BACKENDS == ("", *(k.value for k in BackendKind))  # "": the default, for the CLI and replays
