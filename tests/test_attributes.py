import pytest
import torch

from latentatlas.data.synthfaces import FACTOR_NAMES
from latentatlas.io.errors import UserError
from latentatlas.training.attributes import FactorPredictor, TrainConfig, evaluate, load_predictor, train


def test_training_resumes_exactly_and_round_trips(tmp_path):
    cfg = TrainConfig(steps=4, batch=8, width=4, render_resolution=32)
    straight = train(tmp_path / "a.safetensors", cfg, progress=False)
    train(tmp_path / "b.safetensors", cfg, progress=False, max_steps_this_run=2)
    assert not (tmp_path / "b.safetensors").exists()  # not finished: only the resumable state
    resumed = train(tmp_path / "b.safetensors", cfg, progress=False)
    for (k, a), (_, b) in zip(straight.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), k
    loaded = load_predictor(tmp_path / "b.safetensors")
    resumed.eval().requires_grad_(False)  # frozen as loaded: the same (batch-norm folded) path
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    assert torch.equal(loaded.predict(x), resumed.predict(x))
    scores = evaluate(loaded, n=20, batch=10)
    assert list(scores) == list(FACTOR_NAMES)
    with pytest.raises(UserError, match="another config"):
        train(tmp_path / "b.safetensors", TrainConfig(steps=5, batch=8, width=4), progress=False)


def test_predictor_learns_something_quickly(tmp_path):
    # A few hundred small steps: glasses (large, binary) is learnt well above chance.
    torch.manual_seed(0)
    cfg = TrainConfig(steps=150, batch=32, width=8, lr=3e-3, render_resolution=64)
    model = train(tmp_path / "p.safetensors", cfg, progress=False)
    scores = evaluate(model, n=200, batch=100)
    assert scores["glasses"] > 0.8, scores
    assert scores["skin_tone"] > 0.5, scores


def test_frozen_predictor_folds_batch_norm_and_stays_exact_enough():
    torch.manual_seed(0)
    model = FactorPredictor(width=8).eval()
    with torch.no_grad():  # batch statistics far from the identity, so a wrong fold shows
        for m in model.trunk:
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
                m.weight.uniform_(0.5, 1.5)
    x = torch.rand(3, 3, 64, 64) * 2 - 1
    plain = model.embed(model.trunk(x))
    # Weights that need a gradient (training, fine-tuning) keep the batch norms: gradients reach them.
    model.features(x).sum().backward()
    assert model.trunk[1].weight.grad is not None and model._folded is None
    model.requires_grad_(False)
    folded = model.features(x)
    assert model._folded is not None
    torch.testing.assert_close(folded, plain.detach(), rtol=1e-5, atol=1e-5)
    # An in-place change of a statistic is seen, not served from the cache.
    with torch.no_grad():
        model.trunk[1].running_mean.add_(0.5)
    torch.testing.assert_close(model.features(x), model.embed(model.trunk(x)), rtol=1e-5, atol=1e-5)
    # The input keeps its gradient through the folded path (the projector's use).
    xg = x.clone().requires_grad_(True)
    model.features(xg).square().sum().backward()
    xp = x.clone().requires_grad_(True)
    model.embed(model.trunk(xp)).square().sum().backward()
    torch.testing.assert_close(xg.grad, xp.grad, rtol=1e-4, atol=1e-6)
