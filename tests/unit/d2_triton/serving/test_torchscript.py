"""TorchScript used on purpose shows no deprecation warning; every other warning still shows."""

from __future__ import annotations

import warnings

import torch

from d2_triton.serving import torchscript


def test_loading_a_torchscript_file_gives_no_deprecation_warning(tmp_path):
    path = tmp_path / "relu.pt"
    with torchscript.on_purpose():
        torch.jit.save(torch.jit.script(torch.nn.ReLU()), str(path))
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        module = torchscript.load(path)
    assert not shown, [str(w.message) for w in shown]
    assert module(torch.tensor([-1.0, 2.0])).tolist() == [0.0, 2.0]


def test_only_the_deprecation_is_hidden():
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        with torchscript.on_purpose():
            warnings.warn("`torch.jit.trace` is deprecated. Switch", FutureWarning, stacklevel=1)
            warnings.warn("something else is deprecated", FutureWarning, stacklevel=1)
            warnings.warn("`torch.jit.trace` is deprecated.", UserWarning, stacklevel=1)
        torch.jit.script(torch.nn.ReLU())  # outside the block: torch's own warning shows
    messages = [str(w.message) for w in shown]
    assert messages[:2] == ["something else is deprecated", "`torch.jit.trace` is deprecated."]
    assert any("`torch.jit.script` is deprecated" in m for m in messages[2:]), messages


def test_tracing_hides_the_tracers_warnings_too():
    def branchy(x):
        return x * 2 if bool(x.sum() > 0) else x  # a Python bool: the tracer warns

    def shown_while(block) -> list:
        with warnings.catch_warnings(record=True) as shown:
            warnings.simplefilter("always")
            with block:
                torch.jit.trace(branchy, torch.ones(2), check_trace=False)
        return [w.category for w in shown]

    assert shown_while(torchscript.on_purpose(tracing=True)) == []
    assert shown_while(torchscript.on_purpose()) == [torch.jit.TracerWarning]
