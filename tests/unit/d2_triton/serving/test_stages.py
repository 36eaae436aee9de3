"""The staged detector's plan and runner (d2_triton.serving.stages), on toy stages.

The real stages of each architecture are exported and served by the integration tests
(parity against Detectron2); here: the plan's validation and JSON form, the chaining of
named tensors through TorchScript and OpenVINO stages, and the thread arithmetic.
"""

from __future__ import annotations

import json

import pytest
import torch

from d2_triton.errors import ModelConfigError
from d2_triton.serving import stages
from d2_triton.serving.stages import PLAN_FILE, Stage, StagedModel, StagePlan


class Scale(torch.nn.Module):
    def forward(self, image):
        return image.float() / 255.0, torch._shape_as_tensor(image)[1:]


class Conv(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x):
        return self.conv(x[None]).relu()


class Sum(torch.nn.Module):
    def forward(self, features, size):
        return features.sum(dim=(0, 1)), size * 2


PLAN = StagePlan(
    "image",
    (
        Stage("scale", "torchscript", "scale.pt", ("image",), ("scaled", "size")),
        Stage("conv", "openvino", "conv.xml", ("scaled",), ("features",)),
        Stage("sum", "torchscript", "sum.pt", ("features", "size"), ("total", "doubled")),
    ),
    ("doubled", "total"),
)


def write_toy_plan(folder, plan=PLAN):
    import openvino

    image = torch.randint(0, 255, (3, 10, 12), dtype=torch.uint8)
    torch.jit.trace(Scale(), (image,)).save(str(folder / "scale.pt"))
    scaled = image.float() / 255.0
    traced_conv = torch.jit.trace(Conv().eval(), (scaled,))
    converted = openvino.convert_model(traced_conv, example_input=(scaled,))
    openvino.save_model(converted, str(folder / "conv.xml"), compress_to_fp16=False)
    features = Conv()(scaled)
    torch.jit.trace(Sum(), (features, torch.tensor([10, 12]))).save(str(folder / "sum.pt"))
    (folder / PLAN_FILE).write_text(plan.to_json())


def test_plan_round_trips_through_json():
    assert StagePlan.from_json(PLAN.to_json()) == PLAN
    bf16 = StagePlan(PLAN.input, PLAN.stages, PLAN.outputs, "bf16")
    assert StagePlan.from_json(bf16.to_json()) == bf16


def test_a_plan_without_a_precision_is_float32():
    """stages.json written before precisions existed."""
    document = json.loads(PLAN.to_json())
    del document["precision"]
    assert StagePlan.from_json(json.dumps(document)).precision == "f32"


@pytest.mark.parametrize(
    ("stage", "outputs", "message"),
    [
        (Stage("a", "torchscript", "a.pt", ("nothing",), ("x",)), ("x",), "reads unknown"),
        (Stage("a", "onnx", "a.onnx", ("image",), ("x",)), ("x",), "unknown runtime"),
        (Stage("a", "torchscript", "a.pt", ("image",), ("x",)), ("y",), "no stage produces"),
    ],
)
def test_invalid_plans_are_refused(stage, outputs, message):
    with pytest.raises(ModelConfigError, match=message):
        StagePlan("image", (stage,), outputs)


def test_an_unknown_precision_is_refused():
    with pytest.raises(ModelConfigError, match="unknown precision 'fp8'"):
        StagePlan(PLAN.input, PLAN.stages, PLAN.outputs, "fp8")


def test_malformed_json_is_a_model_config_error():
    with pytest.raises(ModelConfigError, match=r"invalid stages\.json"):
        StagePlan.from_json('{"input": "image", "stages": [{"name": "a"}], "outputs": []}')


def test_stages_chain_named_tensors_across_runtimes(tmp_path):
    write_toy_plan(tmp_path)
    model = StagedModel.load(tmp_path, torch.device("cpu"), threads=1)
    image = torch.randint(0, 255, (3, 17, 23), dtype=torch.uint8)  # not the traced size
    doubled, total = model(image)
    expected = Conv()(image.float() / 255.0).sum(dim=(0, 1))
    assert doubled.tolist() == [34, 46]
    assert total.shape == expected.shape == (17, 23)
    torch.testing.assert_close(total, expected, rtol=1e-5, atol=1e-5)


def test_a_stage_giving_the_wrong_number_of_outputs_fails_loudly(tmp_path):
    wrong = StagePlan(
        "image", (Stage("scale", "torchscript", "scale.pt", ("image",), ("scaled",)),), ("scaled",)
    )
    write_toy_plan(tmp_path, wrong)
    model = StagedModel.load(tmp_path, torch.device("cpu"), threads=1)
    with pytest.raises(ModelConfigError, match="gave 2 outputs, its plan names 1"):
        model(torch.zeros((3, 4, 4), dtype=torch.uint8))


def test_threads_share_out_the_cores_two_instances_to_a_core(monkeypatch):
    monkeypatch.setattr(stages, "available_cores", lambda: 16)
    assert stages.threads_per_instance(0, 1) == 16
    assert stages.threads_per_instance(0, 2) == 16  # the two overlap each other's glue
    assert stages.threads_per_instance(0, 4) == 8
    assert stages.threads_per_instance(0, 32) == 1
    assert stages.threads_per_instance(3, 4) == 3  # configured wins


def test_openvino_outputs_the_plan_returns_survive_the_next_call(tmp_path):
    """OpenVINO's outputs are shared buffers; the ones a plan returns are copied out."""
    returns_features = StagePlan("image", PLAN.stages, ("features", "total"))
    write_toy_plan(tmp_path, returns_features)
    model = StagedModel.load(tmp_path, torch.device("cpu"), threads=1)
    first = model(torch.zeros((3, 8, 8), dtype=torch.uint8))[0]
    kept = first.clone()
    model(torch.full((3, 8, 8), 255, dtype=torch.uint8))
    assert torch.equal(first, kept)


def test_a_folder_without_a_plan_says_to_export_again(tmp_path):
    with pytest.raises(ModelConfigError, match="export the model again"):
        StagedModel.load(tmp_path, torch.device("cpu"), threads=1)


@pytest.mark.parametrize("native", [True, False])
def test_bf16_runs_where_the_cpu_has_it_and_f32_elsewhere(tmp_path, monkeypatch, native):
    """The CPU's capabilities decide; the answer stays close to float32's either way."""
    import openvino

    capabilities = ["FP32", "INT8", "BIN", "EXPORT_IMPORT"] + (["BF16"] if native else [])
    real_get_property = openvino.Core.get_property

    def get_property(core, device, name):
        if name == "OPTIMIZATION_CAPABILITIES":
            return capabilities
        return real_get_property(core, device, name)

    monkeypatch.setattr(openvino.Core, "get_property", get_property)
    write_toy_plan(tmp_path, StagePlan(PLAN.input, PLAN.stages, PLAN.outputs, "bf16"))
    model = StagedModel.load(tmp_path, torch.device("cpu"), threads=1)
    assert model.precision == ("bf16" if native else "f32")
    assert StagedModel.load(tmp_path, torch.device("cpu"), 1, precision="f32").precision == "f32"
    image = torch.randint(0, 255, (3, 17, 23), dtype=torch.uint8)
    expected = Conv()(image.float() / 255.0).sum(dim=(0, 1))
    torch.testing.assert_close(model(image)[1], expected, rtol=0.05, atol=0.05)
