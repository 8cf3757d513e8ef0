"""A template's U-V map: cylindrical unwrap, fold repair, crop to the unit square.

Convention: U-V
    ``(V, 2)`` float64 in [0, 1]. u is the arc length around the vertical axis of the best-fit cylinder
    (menpo3d's `optimal_cylindrical_unwrap`) and v the height, each scaled and offset so that anchor
    landmarks sit at given U-V (for DenseReg's layout: jaw ends 0 and 16 at u = 0.110 and 0.890, so the
    midline is u = 0.5 and u grows left to right across a frontal image; the chin (8) at v = 0.171 and
    the outer eye corners (36, 45) at v = 0.701, v growing upward). Folds of the cylindrical map (nose
    wings, under the chin) are relaxed by a local harmonic (Tutte) solve so that the map is one-to-one:
    every triangle has positive area in U-V. Triangles that leave [0, 1]^2 are dropped.
"""

from __future__ import annotations

import numpy as np

from densereg_data.errors import TemplateError

#: The unwrap methods a template definition may name ("uv": {"method": ...}).
UNWRAP_METHODS = ("optimal_cylindrical_unwrap",)


def cylindrical_uv(vertices: np.ndarray, landmarks: np.ndarray, anchors: dict) -> np.ndarray:
    """(V, 2) float64 U-V of `vertices` (V, 3): menpo3d's cylindrical unwrap, scaled and offset per axis
    (least squares) so that the anchor landmarks of `landmarks` (68, 3) land on their U-V.

    anchors: {"u": {landmark index (str): u, ...}, "v": {landmark index (str): v, ...}}.
    """
    from menpo.shape import PointCloud
    from menpo3d.unwrap import optimal_cylindrical_unwrap

    unwrap = optimal_cylindrical_unwrap(PointCloud(vertices))
    cyl, cyl_lm = unwrap.apply(vertices), unwrap.apply(landmarks)
    uv = np.empty((len(vertices), 2))
    for axis, name in enumerate(("u", "v")):
        idx = np.array([int(k) for k in anchors[name]])
        target = np.array(list(anchors[name].values()), dtype=np.float64)
        design = np.c_[cyl_lm[idx, axis], np.ones(len(idx))]
        (scale, offset), *_ = np.linalg.lstsq(design, target, rcond=None)
        uv[:, axis] = scale * cyl[:, axis] + offset
    return uv


def uv_signed_areas(uv: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(F,) signed U-V area of each triangle; positive = counter-clockwise with u right and v up."""
    a, b, c = uv[faces[:, 0]], uv[faces[:, 1]], uv[faces[:, 2]]
    return 0.5 * ((b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (c[:, 0] - a[:, 0]) * (b[:, 1] - a[:, 1]))


def vertex_adjacency(faces: np.ndarray, n_vertices: int):
    """(V, V) scipy CSR matrix, 1.0 where two vertices share an edge."""
    from scipy import sparse

    i = faces[:, [0, 1, 2, 1, 2, 0]].ravel()
    j = faces[:, [1, 2, 0, 0, 1, 2]].ravel()
    adj = sparse.coo_matrix((np.ones(len(i)), (i, j)), shape=(n_vertices, n_vertices)).tocsr()
    adj.data[:] = 1.0
    return adj


def boundary_vertices(faces: np.ndarray, n_vertices: int) -> np.ndarray:
    """(V,) bool: vertices on a boundary edge (an edge used by one triangle only)."""
    edges = np.sort(faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1)
    unique, counts = np.unique(edges, axis=0, return_counts=True)
    on_boundary = np.zeros(n_vertices, dtype=bool)
    on_boundary[unique[counts == 1].ravel()] = True
    return on_boundary


def repair_folds(
    uv: np.ndarray, faces: np.ndarray, rings: int = 2, max_rounds: int = 30, min_area_fraction: float = 1e-3
) -> tuple[np.ndarray, np.ndarray]:
    """Relax folded or collapsed triangles of a U-V map by local harmonic solves.

    A triangle is bad when its signed U-V area is below `min_area_fraction` of the median area (so
    flipped, folded and nearly collapsed triangles all count). The interior vertices of bad triangles,
    grown by `rings` rings, are re-placed at the uniform-weight harmonic (Tutte) solution with every
    other vertex fixed (boundary vertices stay put), growing the region each round. When a round cannot
    help (no interior vertex to move, or no fewer bad triangles than before), the bad triangles that
    touch the mesh boundary (slivers at the edge of the mask) are dropped, moving the boundary inward.

    Returns (uv (V, 2), keep (F,) bool); raises TemplateError if bad triangles remain after `max_rounds`.
    """
    from scipy import sparse
    from scipy.sparse.linalg import spsolve

    uv = uv.copy()
    keep = np.ones(len(faces), dtype=bool)
    floor = min_area_fraction * np.median(np.abs(uv_signed_areas(uv, faces)))
    grow = rings
    previous = None
    for _ in range(max_rounds):
        kept = faces[keep]
        bad = uv_signed_areas(uv, kept) <= floor
        if not bad.any():
            return uv, keep
        adj = vertex_adjacency(kept, len(uv))
        degree = np.asarray(adj.sum(axis=1)).ravel()
        boundary = boundary_vertices(kept, len(uv))
        free = np.zeros(len(uv), dtype=bool)
        free[kept[bad].ravel()] = True
        free &= ~boundary
        if not free.any() or (previous is not None and bad.sum() >= previous):
            # relaxing the inside cannot help: these are slivers on the mask's edge; drop them
            keep[np.flatnonzero(keep)[bad & boundary[kept].any(axis=1)]] = False
            previous = None
            continue
        previous = bad.sum()
        for _ in range(grow):
            free |= (adj @ free.astype(np.float64)) > 0
        free &= ~boundary
        idx = np.flatnonzero(free)
        lap = sparse.diags(degree[idx]) - adj[idx][:, idx]
        rhs = adj[idx][:, ~free] @ uv[~free]
        uv[idx] = np.column_stack([spsolve(lap.tocsc(), rhs[:, k]) for k in range(2)])
        grow += 1
    n_bad = int((uv_signed_areas(uv, faces[keep]) <= floor).sum())
    raise TemplateError(f"U-V fold repair left {n_bad} folded triangles after {max_rounds} rounds")


def crop_to_unit_square(vertices: np.ndarray, faces: np.ndarray, uv: np.ndarray):
    """Keep the triangles whose three vertices lie in [0, 1]^2 (their largest connected piece) and the
    vertices they use; returns (vertices (V', 3), faces (F', 3) int64 reindexed, uv (V', 2))."""
    from scipy.sparse.csgraph import connected_components

    inside = np.all((uv >= 0) & (uv <= 1), axis=1)
    faces = faces[inside[faces].all(axis=1)]
    _, comp = connected_components(vertex_adjacency(faces, len(vertices)), directed=False)
    used = np.zeros(len(vertices), dtype=bool)
    used[faces.ravel()] = True
    main = np.bincount(comp[used]).argmax()
    faces = faces[comp[faces[:, 0]] == main]
    keep = np.zeros(len(vertices), dtype=bool)
    keep[faces.ravel()] = True
    new_index = np.cumsum(keep) - 1
    return vertices[keep], new_index[faces].astype(np.int64), uv[keep]
