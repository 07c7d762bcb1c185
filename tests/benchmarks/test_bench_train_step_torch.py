"""The PyTorch side of benchmarks/train_step.py --compare-torch: its training step trains (the loss
falls, every parameter moves), bfloat16 runs the layers under CPU autocast with float32 parameters
and gradients, and a torch.compile that fails becomes one line and an n/a column, not a traceback.
Nothing is timed; torch.compile itself never runs (it is replaced), so no C++ compiler is needed."""

from __future__ import annotations

import importlib.util
import pathlib
import sys

import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch

SCRIPT = pathlib.Path(__file__).resolve().parents[2] / "benchmarks" / "train_step.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_train_step", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def layer_output_dtypes(model: torch.nn.Module) -> list[torch.dtype]:
    """Records the output dtype of every convolution and linear layer on each forward."""
    seen = []
    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d | torch.nn.Linear):
            m.register_forward_hook(lambda mod, args, out: seen.append(out.dtype))
    return seen


def test_eager_step_lowers_the_loss_and_moves_every_parameter(bench):
    model, step = bench.torch_train_step("lenet5", batch=16, mode="eager")
    before = {k: p.detach().clone() for k, p in model.named_parameters()}
    first = float(step())
    second = float(step())  # the loss at the parameters after one update, on the same batch
    # One SGD step of lr 0.01 on the batch it is evaluated on goes down the gradient: the loss falls
    # unless the step overshoots, which it would only with a far larger learning rate.
    assert second < first
    for k, p in model.named_parameters():
        assert not torch.equal(p.detach(), before[k]), k
        assert p.dtype == torch.float32, k


@pytest.mark.parametrize(("dtype", "expected"), [("bfloat16", torch.bfloat16),
                                                 ("float32", torch.float32)])
def test_bfloat16_runs_every_layer_under_autocast_with_float32_parameters(bench, dtype, expected):
    model, step = bench.torch_train_step("lenet5", batch=8, mode="eager", dtype=dtype)
    dtypes = layer_output_dtypes(model)
    loss = step()
    assert len(dtypes) == 5  # c1, c3, c5, f6, output
    assert set(dtypes) == {expected}
    assert loss.dtype == torch.float32
    for k, p in model.named_parameters():
        assert p.dtype == torch.float32 and p.grad.dtype == torch.float32, k


def test_channels_last_puts_the_convolutions_in_nhwc(bench):
    model, step = bench.torch_train_step("lenet5", batch=8, channels_last=True)
    outputs = []
    model.c3.register_forward_hook(lambda mod, args, out: outputs.append(out))
    step()
    # c3, not c1: with c1's one input channel the two layouts are the same strides.
    assert model.c3.weight.is_contiguous(memory_format=torch.channels_last)
    assert not model.c3.weight.is_contiguous()
    assert outputs[0].is_contiguous(memory_format=torch.channels_last)
    assert not outputs[0].is_contiguous()


def _raise_on_wrap(model, **kwargs):
    raise RuntimeError("InductorError: no C++ compiler found\n  (the details inductor adds)")


def _raise_on_first_call(model, **kwargs):
    # As inductor does: torch.compile returns at once and fails when the first call compiles.
    def compiled(*args):
        raise RuntimeError("backend='inductor' raised:\nCppCompileError: C++ compile error")
    return compiled


@pytest.mark.parametrize(("fake", "message"), [
    (_raise_on_wrap, "RuntimeError: InductorError: no C++ compiler found"),
    (_raise_on_first_call, "RuntimeError: backend='inductor' raised: CppCompileError: C++ compile error")])
def test_a_failing_compile_is_one_line_and_leaves_eager(bench, monkeypatch, capsys, fake, message):
    monkeypatch.setattr(torch, "compile", fake)
    runs = bench.bench_torch("lenet5", 8, 1, ("eager", "compile"), "float32", False)
    assert capsys.readouterr().out.splitlines() == [f"torch compile failed on lenet5: {message}"]
    assert runs["compile"]["run"] is None and callable(runs["eager"]["run"])


def test_the_table_shows_n_a_for_a_failed_compile(bench, monkeypatch, capsys):
    monkeypatch.setattr(torch, "compile", _raise_on_first_call)
    monkeypatch.setattr(sys, "argv", ["train_step.py", "--models", "lenet5", "--conv-impl", "xla",
                                      "--batch", "8", "--compare-torch", "--repeats", "1",
                                      "--steps", "1"])
    bench.main()
    out = capsys.readouterr().out.splitlines()
    assert sum("failed" in ln for ln in out) == 1
    assert not any("Traceback" in ln for ln in out)
    header = next(ln for ln in out if ln.startswith("model "))
    assert header.split()[10:12] == ["jax/eager", "jax/compile"]  # after "compile s"
    jax_row = next(ln for ln in out if ln.startswith("lenet5") and " xla " in ln).split()
    eager_ratio, compile_ratio = jax_row[7], jax_row[8]
    assert float(eager_ratio) > 0 and compile_ratio == "n/a"
    torch_rows = {" ".join(ln.split()[1:3]): ln.split()[3:] for ln in out
                  if ln.startswith("lenet5") and " torch " in ln}
    assert torch_rows["torch compile"][1:4] == ["n/a"] * 3
    assert float(torch_rows["torch eager"][1]) > 0


def test_torch_modes_takes_eager_and_compile_only(bench):
    assert bench.torch_modes("compile,eager,compile") == ("compile", "eager")
    for bad in ("", "eager,", "inductor", "eager,jit"):
        with pytest.raises(bench.argparse.ArgumentTypeError, match="takes eager and/or compile"):
            bench.torch_modes(bad)
