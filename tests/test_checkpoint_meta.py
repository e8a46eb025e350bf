"""textdiff.json has one owner: defaults for absent keys, the class prompt formatted in one place, lineage."""

import json

import pytest

from textdiff_core import checkpoint
from textdiff_core.checkpoint import CheckpointMeta
from textdiff_core.errors import ModelError
from textdiff_core.models import read_sidecar, save_model


def test_absent_keys_take_the_schema_defaults():
    meta = CheckpointMeta.from_dict({"objective": "ar", "extra": 1})
    assert (meta.conditioning, meta.classes, meta.class_prompt, meta.class_dirs) == ("none", [], None, {})
    assert not meta.class_prompted and meta.raw["extra"] == 1 and [m.raw for m in meta.lineage()] == [meta.raw]
    assert (meta.steps, meta.tokens_seen, meta.num_processes, meta.noise, meta.parent) == (None, 0, 1, {}, None)
    assert (meta.steps_in_all, meta.tokens_in_all, meta.epochs_in_all(), meta.loss_weighting) == (None, 0, None, "elbo")


def test_class_prompts_and_lineage():
    parent = {"steps": 10, "conditioning": "class"}
    meta = CheckpointMeta.from_dict({"conditioning": "class", "classes": ["neg", "pos"],
                                     "class_prompt": "{label} review:", "continued_from": parent, "steps": 5})
    assert meta.class_prompted and meta.class_prompts() == ["neg review:", "pos review:"]
    assert meta.prompt_for("pos") == "pos review:" and checkpoint.class_prompts(meta.raw) == meta.class_prompts()
    assert [stage.steps for stage in meta.lineage()] == [10, 5] and meta.parent.raw == parent
    with pytest.raises(ModelError):
        CheckpointMeta().prompt_for("pos")


def test_lineage_totals_and_epochs_recorded_or_recomputed():
    meta = CheckpointMeta.from_dict({"steps": 5, "tokens_seen": 50, "train_time_s": 2.0, "total_steps": 15,
                                     "total_tokens_seen": 150, "total_train_time_s": 6.0, "epochs": 0.5})
    assert (meta.steps_in_all, meta.tokens_in_all, meta.train_time_in_all, meta.epochs_in_all()) == (15, 150, 6.0, 0.5)
    assert CheckpointMeta.from_dict(meta.raw | {"total_epochs": 1.5}).epochs_in_all() == 1.5
    older = CheckpointMeta.from_dict({"steps": 10, "num_processes": 2, "data": {"n": 80},
                                      "config": {"batch_size": 4, "grad_accum": 2}})
    assert older.own_epochs() == older.epochs_in_all() == 2.0  # 10 steps x 16 examples / 80
    assert CheckpointMeta.from_dict({"steps": 10, "config": {"batch_size": 4}}).own_epochs() is None


def test_read_and_write_round_trip_and_refuse_a_non_object(tmp_path):
    assert checkpoint.read(tmp_path) == {} and not checkpoint.exists(tmp_path)
    checkpoint.write(tmp_path, {"objective": "diffusion", "classes": ["a", "b"]})
    assert read_sidecar(tmp_path) == checkpoint.read(tmp_path) == {"objective": "diffusion", "classes": ["a", "b"]}
    assert CheckpointMeta.read(tmp_path).classes == ["a", "b"]
    (tmp_path / checkpoint.SIDECAR).write_text(json.dumps([1, 2]))
    with pytest.raises(ModelError, match="JSON object"):
        checkpoint.read(tmp_path)


def test_save_model_writes_the_sidecar_through_the_owner(tmp_path):
    from textdiff_core.models import load_model

    lm = load_model("tiny", device="cpu")
    save_model(lm.model, lm.tokenizer, tmp_path / "m", {"objective": "diffusion", "class_prompt": "{label}:"})
    assert CheckpointMeta.read(tmp_path / "m").class_prompt == "{label}:"
