"""The shipped default checkpoints load, write, and get obvious reviews right, in seconds on CPU."""

import time
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from textdiff_core.classify import load_classifier
from textdiff_core.decoding import generate
from textdiff_core.models import load_model
from textdiff_core.settings import CAUSAL, MASKED

CHECKPOINTS = Path(__file__).resolve().parents[1] / "checkpoints"
SHIPPED = {"imdb-diffusion": MASKED, "imdb-ar": CAUSAL}
REVIEWS = {
    "positive": "A wonderful, moving film. The acting is superb, the story is beautiful, and I loved every minute of "
                "it. One of the best movies I have seen in years; highly recommended.",
    "negative": "A terrible, boring film. The acting is awful, the story makes no sense, and I hated every minute of "
                "it. One of the worst movies I have ever seen; a complete waste of time.",
}


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_a_shipped_checkpoint_generates_and_classifies_obvious_reviews(name):
    path = CHECKPOINTS / name
    assert (path / "textdiff.json").is_file(), f"{path} is not shipped"
    assert all(f.stat().st_size < 100 * 2**20 for f in path.iterdir())  # each file well under GitHub's limit
    with safe_open(str(path / "model.safetensors"), "pt") as weights:  # stored as fp16, as the model card says
        assert {weights.get_slice(k).get_dtype() for k in weights.keys()} == {"F16"}
    started = time.time()
    lm = load_model(str(path), SHIPPED[name])
    strategy = "confidence" if SHIPPED[name] == MASKED else "ar"
    trace = generate(lm, "The movie was", 32, strategy=strategy, seed=0, label="positive")
    assert not any(trace.frames[-1].masked) and len(trace.generated_text.split()) >= 5

    clf = load_classifier(str(path))
    for label, review in REVIEWS.items():
        prediction = clf.classify(review, samples=16, generator=torch.Generator().manual_seed(0))
        assert prediction.label == label, (name, label, prediction.posterior)
    assert time.time() - started < 60


def test_the_default_generate_command_decodes_64_tokens_in_at_most_16_passes(tmp_path):
    """The first thing a newcomer runs shows parallel decoding: the CLI's defaults, with no flags."""
    import json

    from train_cli import main

    out = tmp_path / "T.json"
    assert main(["generate", "--checkpoint", str(CHECKPOINTS / "imdb-diffusion"), "--prompt", "This movie",
                 "--length", "64", "--json", str(out)]) == 0
    frames = json.loads(out.read_text())["frames"]
    assert frames[-1]["forward_passes"] <= 16 and not any(frames[-1]["masked"])
