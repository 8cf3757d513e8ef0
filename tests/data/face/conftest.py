"""Fixtures of the face tests: the default face model, loaded once."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def face_model():
    from densereg_data.face.models import load_face_model

    return load_face_model("menpo3d")


@pytest.fixture(scope="session")
def fitter(face_model):
    return face_model.fitter
