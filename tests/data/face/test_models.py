"""The face-model registry: specs, errors, identity, facts, and labellers bound to the model they were given."""

from __future__ import annotations

import dataclasses
import pickle

import numpy as np
import pytest

from densereg_data.errors import InputError, TemplateError
from densereg_data.face import models
from densereg_data.face.labeller import Labeller, LabellerFactory
from densereg_data.face.models import FACE_MODELS, FaceModel, load_face_model, parse_spec, register_face_model
from densereg_data.format.template_facts import TemplateFacts

#: The menpo3d model's content hash: outputs record it (template.h5, index.json), so a change must be deliberate.
MENPO3D_HASH = "778dc3344ebd9e0d2a9948ca453249f7027493b563e713bc7780c678bcb353a4"


def test_menpo3d_is_the_registered_default():
    assert "menpo3d" in FACE_MODELS and models.DEFAULT_FACE_MODEL == "menpo3d"
    assert FACE_MODELS["menpo3d"].path is None and FACE_MODELS["menpo3d"].licence


def test_unknown_model_is_one_line_listing_the_valid_names():
    with pytest.raises(TemplateError) as info:
        load_face_model("flame")
    message = str(info.value)
    assert len(message.splitlines()) == 1
    assert "unknown face model 'flame'" in message and message.endswith("valid: " + ", ".join(sorted(FACE_MODELS)))
    assert isinstance(info.value, InputError) and isinstance(info.value, ValueError)


@pytest.mark.parametrize("spec", ["menpo3d", "menpo3d:", " menpo3d"])
def test_spec_forms_name_the_same_model(spec, face_model):
    assert parse_spec(spec) == ("menpo3d", None)
    assert load_face_model(spec) is face_model is load_face_model()


@pytest.mark.parametrize("name", ["ict", "sfm"])
def test_a_model_of_files_needs_its_path(name):
    with pytest.raises(TemplateError, match=rf"face model '{name}' needs a PATH \(.*\): use '{name}:PATH'"):
        load_face_model(name)


def test_a_path_for_a_model_that_takes_none_is_refused():
    with pytest.raises(TemplateError, match=r"face model 'menpo3d' takes no PATH, got 'menpo3d:/tmp/x'"):
        parse_spec("menpo3d:/tmp/x")


def test_id_and_hash_are_stable(face_model):
    assert face_model.name == "menpo3d" and face_model.spec == "menpo3d"
    assert face_model.id == "menpo3d-face" == face_model.template.id
    assert face_model.hash == MENPO3D_HASH == face_model.template.hash
    assert face_model.shape.mean is face_model.template.vertices
    assert "+z" in face_model.frame and face_model.template.units == "mm"


def test_facts_are_template_h5(face_model):
    facts = face_model.facts(grid=64)
    assert facts["template_id"] == "menpo3d-face" and facts["template_hash"] == MENPO3D_HASH
    assert facts["units"] == "mm" and facts["model"] == "menpo3d"
    assert facts["model_size"] == face_model.shape.n_coefficients == 360
    assert facts["uv_to_xyz"].shape == (64, 64, 3) and facts["uv_to_xyz"].dtype == np.float32
    assert facts["part_uv"].shape == (64, 64) and facts["part_uv"].dtype == np.uint8
    checked = TemplateFacts.from_dict(facts)
    assert checked.eye_distance == pytest.approx(face_model.template.eye_distance)
    with pytest.raises(TemplateError, match="grid must be at least 2"):
        face_model.facts(grid=1)


def _half_uv_model(face_model: FaceModel, name: str) -> FaceModel:
    """A model like menpo3d but whose U-V is halved: what it renders shows which model was used."""
    template = dataclasses.replace(face_model.template, uv=face_model.template.uv * 0.5, hash="1" * 64)
    return FaceModel(name=name, spec=name, id="half-face", hash="1" * 64, template=template, shape=face_model.shape)


def test_a_labeller_uses_the_model_it_is_given(face_model, fitter):
    from densereg_data.testing import synthetic_face

    half = _half_uv_model(face_model, "half")
    landmarks = synthetic_face(fitter, np.random.default_rng(0), max_yaw=10, size=96).landmarks
    image = np.zeros((96, 96, 3), np.uint8)
    ours, default = Labeller(half).label(image, landmarks), Labeller(face_model).label(image, landmarks)
    assert Labeller(half).model is half and Labeller(half).fitter is half.fitter
    assert default.uv.max() > 0.6 and 0 < ours.uv.max() <= 0.5
    assert np.array_equal(ours.parts, default.parts) and ours.model_id == "half-face" and ours.model_hash == "1" * 64


def test_labeller_needs_a_model():
    with pytest.raises(TypeError):
        Labeller()  # no default model: a labeller is always bound to the model it is given
    with pytest.raises(TypeError, match="FaceModel or a model spec"):
        Labeller(3)
    with pytest.raises(TemplateError, match="unknown face model"):
        Labeller("nope")


def test_labeller_factory_pickles_and_builds_a_bound_labeller(face_model):
    factory = pickle.loads(pickle.dumps(LabellerFactory("menpo3d")))
    assert factory == LabellerFactory("menpo3d") and factory().model is face_model


def test_registered_loaders_get_the_path(monkeypatch, face_model, tmp_path):
    monkeypatch.setattr(models, "FACE_MODELS", dict(FACE_MODELS))
    seen = []

    @register_face_model("toy-with-path", needs="nothing", licence="test only", path="a folder")
    def _toy(path):
        seen.append(path)
        return _half_uv_model(face_model, "toy-with-path")

    assert load_face_model(f"toy-with-path:{tmp_path}").name == "toy-with-path" and seen == [tmp_path]
    with pytest.raises(TemplateError, match=r"needs a PATH \(a folder\): use 'toy-with-path:PATH'"):
        load_face_model("toy-with-path")
    with pytest.raises(TemplateError, match="already registered"):
        register_face_model("toy-with-path", needs="", licence="")(_toy)
    with pytest.raises(TemplateError, match=r"valid: ict, menpo3d, sfm, toy-with-path$"):
        load_face_model("nope")


def test_a_model_whose_shape_does_not_fit_its_mesh_is_refused(face_model):
    from densereg_data.face.shape_model import DeformableModel

    small = DeformableModel("small", np.zeros((4, 3)), np.ones((4, 1), np.float32), np.ones(1))
    with pytest.raises(TemplateError, match=r"shape model mean \(4, 3\) does not match"):
        FaceModel("bad", "bad", "bad", "0" * 64, face_model.template, small)
