"""Template definitions (data, not code), installed with densereg as `densereg_templates`.

Each ``<id>.json`` names a template: its mesh and landmark sources, its U-V unwrap and anchors, how
its parts and jaw-contour candidates are derived, and its deformable model. Every key is read by
`densereg_data.face.template.load_template` (the "model" section by the face model's loader in
`densereg_data.face.models`); the derived arrays are cached on disk under a hash of the definition.
"""

from __future__ import annotations

from pathlib import Path

DEFINITIONS_DIR = Path(__file__).resolve().parent


def definition_path(template_id: str) -> Path:
    """Path of the JSON definition of `template_id` (e.g. "menpo3d-face")."""
    return DEFINITIONS_DIR / f"{template_id.replace('-', '_')}.json"


def available() -> list[str]:
    """Ids of the template definitions shipped with the package."""
    return sorted(p.stem.replace("_", "-") for p in DEFINITIONS_DIR.glob("*.json"))
