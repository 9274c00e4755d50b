"""trainer.fit.fit, the one epoch loop: keep-best, learning-rate schedule, per-epoch callback, stop
requests and resume, on real training of a small ResNet18 on 16-px synthetic crops."""

from __future__ import annotations

import io

import pytest
import torch

from trainer.configs import RetrainConfig
from trainer.fit import EpochStats, FitState, fit
from trainer.models import build_model
from trainer.streams.synthetic import CameraStreamSpec, generate_window
from trainer.training import evaluate

# Head-only at a high rate: the held-out accuracy peaks mid-run (0.125, 0.125, 0.425, 0.125, ...).
HEAD = RetrainConfig(epochs=6, layers="head", hidden=16, lr=0.5, batch_size=16)


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: one thread is fastest, and the same sums on every machine
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def window():
    spec = CameraStreamSpec(name="t", seed=5, crop_size=16, window_seconds=40)
    return generate_window(spec, 3).split(0.3, seed=0)


def _model():
    return build_model("resnet18", hidden=16, input_size=16, seed=0)


def _weights(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_keeps_the_best_validation_epoch_or_ends_with_the_last(window):
    train, held = window
    snapshots: dict[int, dict[str, torch.Tensor]] = {}
    model = _model()
    result = fit(model, HEAD, train, held, on_epoch=lambda st: snapshots.update({st.epoch: _weights(model)}))
    accs = [st.val_accuracy for st in result.history]
    assert result.best_epoch < HEAD.epochs, f"the curve must peak before its end for this test to mean much: {accs}"
    assert result.best_val_accuracy == max(accs) and accs.index(max(accs)) + 1 == result.best_epoch
    assert _same(_weights(model), snapshots[result.best_epoch])
    assert evaluate(model, held) == pytest.approx(result.best_val_accuracy)

    last = _model()
    plain = fit(last, HEAD, train, held, keep_best=False)
    assert plain.best_epoch == result.best_epoch  # reported all the same
    assert _same(_weights(last), snapshots[HEAD.epochs])


def test_on_epoch_gets_every_epoch_once_with_its_stats(window):
    train, held = window
    model = _model()
    seen: list[EpochStats] = []
    live_accuracy: list[float] = []

    def on_epoch(stats: EpochStats) -> None:
        seen.append(stats)
        live_accuracy.append(evaluate(model, held))  # the model as the epoch left it

    result = fit(model, HEAD, train, held, keep_best=False, on_epoch=on_epoch)
    assert [st.epoch for st in seen] == list(range(1, HEAD.epochs + 1)) and seen == result.history
    assert all(st.epochs == HEAD.epochs and st.loss > 0 and st.img_per_s > 0 for st in seen)
    assert all(0 < st.train_seconds <= st.seconds for st in seen)
    assert [st.val_accuracy for st in seen] == pytest.approx(live_accuracy)
    running_best = [max(st.val_accuracy for st in seen[:i + 1]) for i in range(len(seen))]
    assert [st.best_val_accuracy for st in seen] == running_best
    assert [st.improved for st in seen] == [st.best_epoch == st.epoch for st in seen]
    assert seen[0].improved and not all(st.improved for st in seen)
    assert result.epochs_done == HEAD.epochs and not result.stopped


def test_learning_rate_schedule_comes_from_the_config(window):
    train, held = window
    config = HEAD.model_copy(update={"epochs": 4, "lr": 0.02})
    first_epoch: dict[str, dict[str, torch.Tensor]] = {}
    final: dict[str, dict[str, torch.Tensor]] = {}
    lrs: dict[str, list[float]] = {}
    for schedule in ("constant", "cosine"):
        model = _model()
        result = fit(model, config.model_copy(update={"lr_schedule": schedule}), train, held, keep_best=False,
                     on_epoch=lambda st, m=model, s=schedule: st.epoch == 1 and first_epoch.update({s: _weights(m)}))
        lrs[schedule] = [st.lr for st in result.history]
        final[schedule] = _weights(model)
    assert lrs["constant"] == [0.02] * 4
    assert lrs["cosine"] == pytest.approx([0.02, 0.02 * 0.8536, 0.01, 0.02 * 0.1464], rel=1e-3)
    # Both train their first epoch at config.lr; the optimizer really takes the decayed rate after that.
    assert _same(first_epoch["constant"], first_epoch["cosine"])
    assert not _same(final["constant"], final["cosine"])


def test_stop_between_epochs_and_within_an_epoch(window):
    train, held = window
    epochs_seen: list[int] = []
    result = fit(_model(), HEAD, train, held, on_epoch=lambda st: epochs_seen.append(st.epoch),
                 should_stop=lambda: len(epochs_seen) >= 2)
    assert result.stopped and result.epochs_done == 2 and epochs_seen == [1, 2] and len(result.history) == 2

    batches_per_epoch = -(-len(train) // HEAD.batch_size)
    polls = 0

    def stop_in_second_epoch() -> bool:
        nonlocal polls
        polls += 1
        return polls > batches_per_epoch + 2  # the first epoch's polls, then the stop ends epoch 2 early

    model = _model()
    result = fit(model, HEAD, train, held, keep_best=False, should_stop=stop_in_second_epoch)
    assert result.stopped and result.epochs_done == 1 and len(result.history) == 1
    assert result.best_epoch == 1

    never = fit(_model(), HEAD, train, held, should_stop=lambda: True)
    assert never.stopped and never.epochs_done == 0 and never.history == [] and never.best_val_accuracy is None


@pytest.mark.parametrize("layers, family", [("head", "resnet18"), ("all", "shufflenet_v2_x0_5")])
def test_resume_from_a_saved_state_ends_where_an_uninterrupted_fit_does(window, layers, family):
    """The worker's restart: the state saved after epoch 1 (through torch.save, as on disk), a fresh copy
    of the base model, resumed for the remaining epochs."""
    train, held = window
    config = HEAD.model_copy(update={"epochs": 3, "layers": layers, "lr": 0.05 if layers == "all" else 0.5})

    def base():
        return build_model(family, hidden=16, input_size=16, seed=0)

    whole = base()
    expected = fit(whole, config, train, held, keep_best=False, start_accuracy=True)

    saved: dict[int, bytes] = {}

    def checkpoint(stats: EpochStats) -> None:
        buffer = io.BytesIO()
        torch.save(stats.resume_state().to_dict(), buffer)
        saved[stats.epoch] = buffer.getvalue()

    first = fit(base(), config, train, held, keep_best=False, start_accuracy=True, on_epoch=checkpoint,
                should_stop=lambda: len(saved) >= 1)
    assert first.stopped and first.epochs_done == 1
    state = FitState.from_dict(torch.load(io.BytesIO(saved[1]), weights_only=True))
    assert state.epoch == 1 and state.partial == (layers == "head")
    assert state.partial == all(k.startswith("head.") for k in state.model)

    resumed_model = base()
    starts = []
    resumed = fit(resumed_model, config, train, held, keep_best=False, resume_state=state, on_start=starts.append)
    assert starts[0].epoch == 1 and starts[0].start_val_accuracy == expected.start_val_accuracy
    assert resumed.epochs_done == 3 and [st.epoch for st in resumed.history] == [2, 3]
    assert [st.loss for st in resumed.history] == [st.loss for st in expected.history[1:]]
    assert (resumed.best_val_accuracy, resumed.best_epoch) == (expected.best_val_accuracy, expected.best_epoch)
    assert _same(_weights(resumed_model), _weights(whole))
    with pytest.raises(ValueError, match="keep_best"):
        fit(base(), config, train, held, resume_state=state)
