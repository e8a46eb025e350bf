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
    assert not meta.class_prompted and meta.raw["extra"] == 1 and meta.lineage() == [{"objective": "ar", "extra": 1}]


def test_class_prompts_and_lineage():
    parent = {"steps": 10, "conditioning": "class"}
    meta = CheckpointMeta.from_dict({"conditioning": "class", "classes": ["neg", "pos"],
                                     "class_prompt": "{label} review:", "continued_from": parent, "steps": 5})
    assert meta.class_prompted and meta.class_prompts() == ["neg review:", "pos review:"]
    assert meta.prompt_for("pos") == "pos review:" and checkpoint.class_prompts(meta.raw) == meta.class_prompts()
    assert [stage["steps"] for stage in meta.lineage()] == [10, 5]
    with pytest.raises(ModelError):
        CheckpointMeta().prompt_for("pos")


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
