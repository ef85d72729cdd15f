import pytest
import torch

from latentatlas.data.synthfaces import FACTOR_NAMES
from latentatlas.io.errors import UserError
from latentatlas.training.attributes import TrainConfig, evaluate, load_predictor, train


def test_training_resumes_exactly_and_round_trips(tmp_path):
    cfg = TrainConfig(steps=4, batch=8, width=4, render_resolution=32)
    straight = train(tmp_path / "a.safetensors", cfg, progress=False)
    train(tmp_path / "b.safetensors", cfg, progress=False, max_steps_this_run=2)
    assert not (tmp_path / "b.safetensors").exists()  # not finished: only the resumable state
    resumed = train(tmp_path / "b.safetensors", cfg, progress=False)
    for (k, a), (_, b) in zip(straight.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), k
    loaded = load_predictor(tmp_path / "b.safetensors")
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
