"""`300vw`: 300-VW (Shen et al., ICCV-W 2015), 68 iBUG points on every frame of 114 videos.

Files, under the root (the folder holding the video folders ``001/`` ... ``562/``):

    <id>/annot/NNNNNN.pts    the face of frame NNNNNN (1-based, 6 digits), read with `read_pts`
    <id>/vid.avi             the video (the release), or, extracted beforehand,
    <id>/imgs/NNNNNN.jpg     (or .png: mmpose's converter writes them with ffmpeg ``-start_number 1``)

splits: the 50 training videos ("train") and the three test categories of the 300-VW paper ("test1":
laboratory and naturalistic well-lit, "test2": real-world human-computer interaction, "test3":
arbitrary conditions), by video id (`VIDEOS`, as in mmpose's converter); ``"all"`` reads every video,
each face keeping its own split. A folder with ``annot/`` whose id is not one of the 114 is a `Problem`
(reported in "train" and "all"). Every point is VISIBLE (300-VW marks no occlusion).

source: ``<id>/NNNNNN``. image: the extracted frame if there is one, else ``<id>/vid.avi`` with
``extra["frame"]`` = NNNNNN - 1, the 0-based index of the frame as the decoder returns them (`read_frame`;
the first decoded frame is annot/000001), else None. A frame listed in `BROKEN` (mmpose's list of
frames whose annotation does not match the picture, e.g. 401/000731) or a .pts that `read_pts` refuses
is a `Problem`. read_annotations never opens a video; `read_frame` turns a video that does not decode
into one `ImageFileError` line, and needs PyAV (the ``video`` extra: ``pip install 'densereg[video]'``).

Convention: coordinate base
    `COORDINATE_BASE` = 1: 300-VW's files are iBUG .pts files, the format of 300-W (same authors,
    same group), which is 1-based; `read_pts` subtracts 1 (densereg's one rule for .pts). The evidence
    is MODERATE: the 300-VW page gives no base of its own, its files use 300-W's format and mark-up
    tool chain, and mmpose's converter copies the numbers unchanged (its evaluation is relative, so it
    does not tell).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from densereg_data import conventions as cv
from densereg_data.errors import BackendUnavailableError, ImageFileError, LandmarkFileError
from densereg_data.io.annotations import FaceAnnotation, Problem
from densereg_data.io.images import MAX_IMAGE_PIXELS
from densereg_data.io.landmarks import read_pts
from densereg_data.io.untrusted import regular_file

__all__ = ["BROKEN", "COORDINATE_BASE", "LAYOUT", "LICENCE", "SPLITS", "SUBSETS", "VIDEOS", "available_splits",
           "read_annotations", "read_frame"]

SPLITS = ("train", "test1", "test2", "test3")
SUBSETS: tuple[str, ...] = ()
LAYOUT = "the 300-VW folder holding <id>/annot/NNNNNN.pts and <id>/vid.avi (or frames in <id>/imgs/)"
LICENCE = "300-VW: research use only (iBUG, Imperial College London); cite Shen et al., ICCV Workshops 2015"
COORDINATE_BASE = 1

N_POINTS = 68
#: Video files larger than this are refused unread (300-VW's are tens of MB).
MAX_VIDEO_BYTES = 8 * 2**30
#: split -> video ids (the 300-VW paper's categories, as listed in mmpose's 300vw2coco.py).
VIDEOS: dict[str, tuple[str, ...]] = {k: tuple(v.split()) for k, v in {
    "train": "001 002 003 004 007 009 010 011 013 015 016 017 018 019 020 022 025 027 028 029 031 033 034 035 037 "
             "039 041 043 044 046 047 048 049 053 057 059 112 113 115 119 120 123 138 143 144 160 204 205 223 225",
    "test1": "114 124 125 126 150 158 401 402 505 506 507 508 509 510 511 514 515 518 519 520 521 522 524 525 537 "
             "538 540 541 546 547 548",
    "test2": "203 208 211 212 213 214 218 224 403 404 405 406 407 408 409 412 550 551 553",
    "test3": "410 411 516 517 526 528 529 530 531 533 557 558 559 562",
}.items()}
#: video id -> 1-based frame numbers whose annotation is broken (mmpose's ``Base300VW.broken_frames``).
BROKEN_RANGES = {
    "401": "722-724 727-731 788-789 792 795 810-811 850-891 897-898 902-903 910-911 913-923 1122-1137 1140 1143-1158 "
           "1160-1164 1381 1543-1545 1605-1606 1614-1615 1618",
    "402": "677-678 682 686-695 805-814 1015-1042 1068 1075-1078 1080 1082-1096 1664 1666-1701",
    "410": "148 150 176 178-180 182-184 186-188 190-192 194-196 198-200 202-204 206-208 283-284 286-288 290-292 294 "
           "316-344 542-543 626 686-688 690-692 694-695 700 816 823-832 834-835 1058-1059 1118-1132 1183-1192 1194 "
           "1218-1230 1232 1234-1235 1239-1240 1242-1243 1282-1284 1286-1288 1290-1292 1294",
    "411": "19-20 60 80 82-120 231-232 234-370 454-475 480 486-517 522-573 578 627-631 702-703 707 1271-1272 1274-1289",
    "508": "14 147-150 267-274 367-368 370-373 382 613 618 831-832 870 930-935 1029 1086-1088 1175-1176 1179-1184 "
           "1186-1192 1280-1293 1316 1501-1502 1927-1928 1930-1935 1973-1974 1987 1989 2008 2036 2039-2040 2042-2046 "
           "2239 2382 2404-2405 3018 3123-3128",
    "518": "392 475-480 482-512 514-518 633 670-671 780-784 786 1607-1624 1626-1632 1634-1640 1706-1744 1746-1752 "
           "1754-1760 1762-1767 1954-1968 1970-1997 2003-2008 2028 2046 2055-2068",
    "529": "90-96 133 139 605 644-648 650-656 659 661 691-692 1340-1344 1346-1349 1357 1367-1368 1370-1376 1422-1424 "
           "1483 1824 1908-1912 1914-1920 1922 2058-2063 2075-2080 2226-2228 2248 2250-2256 2258-2264 2266-2268 2288 "
           "2290 2422-2424 2426-2432 2434-2440 2442-2444 2484 2487 2498-2503 2834-2840 3007",
    "530": "554-556 720 726-728 730-736 738-744 828-832 834-840 842-848 874-880 882-888 890-896 898-901 927-928 935-936 "
           "1186-1188 1247-1248 1250 1276 1296 1356-1361 1426-1427 1802-1803 1820 2074-2080 2082-2088 2090-2096",
    "531": "109 279-287 322-325",
    "533": "1062-1188 1232-1240 1245-1255 1257-1326 1379-1380 1403-1407 1424 1426-1427 1484-1485 1498-1500 1504-1505",
    "540": "744 746-750",
    "547": "111-112 114-120 122-128 130-135 959 978 1050-1055",
    "548": "429-432 434-440 442-448 450 582-584 586-592 594-600 602 624 626 642 804-808 898-904 906-912 914-920 922-924 "
           "1170-1207 1260-1288 1394 1488 1490",
    "551": "180-181 298-302 494 506-509 516 562-568 675-680 682-684 686-688 690 790-792",
    "553": "551-560 713 761-763 775-776 778-780 783-784 786-792 808-809 1366",
    "557": "22 32-49 57 75 177 180-231 345-379 412-469 524 536 538-539 544 546 621-623 778-780 785 793 801 809 820-822 "
           "994-995 1009 1017 1036 1096-1097 1105 1156-1189 1305 1308-1357 1532-1563 1587 1593 1601 1604 1609 1614 1617 "
           "1622-1623 1625-1651 1653 1657 1671-1715",
}


def _expand(ranges: str) -> frozenset[int]:
    out: set[int] = set()
    for part in ranges.split():
        a, _, b = part.partition("-")
        out.update(range(int(a), int(b or a) + 1))
    return frozenset(out)


BROKEN: dict[str, frozenset[int]] = {k: _expand(v) for k, v in BROKEN_RANGES.items()}
_SPLIT_OF = {vid: split for split, ids in VIDEOS.items() for vid in ids}
_FRAME = re.compile(r"^(\d{6})\.pts$")
#: Frames to seek before the wanted one when the first seek overshoots (then decode from the start).
_SEEK_MARGINS = (0, 30, 300)


def available_splits(root: Path) -> tuple[str, ...]:
    """The splits with at least one video folder holding ``annot/`` under `root`."""
    return tuple(s for s in SPLITS if any((Path(root) / v / "annot").is_dir() for v in VIDEOS[s]))


def _image(folders: tuple[Path, ...], vid: str, number: int) -> tuple[Path | None, dict]:
    for folder in folders:
        for suffix in (".jpg", ".png"):
            path = folder / vid / "imgs" / f"{number:06d}{suffix}"
            if path.is_file():
                return path, {}
    for folder in folders:
        if (folder / vid / "vid.avi").is_file():
            return folder / vid / "vid.avi", {"frame": number - 1}
    return None, {}


def read_annotations(root: Path, split: str, images: Path | None = None) -> tuple[list[FaceAnnotation], list[Problem]]:
    """The 300-VW frames of `split` (one of `SPLITS`, or "all") under `root`, and the frames that cannot be used.

    images: the folder holding ``<id>/imgs/`` or ``<id>/vid.avi`` when not under the root (looked for
    there first). Returns FaceAnnotations with points (68, 2) float64 (x, y) 0-based pixels, state (68,)
    VISIBLE, scheme "ibug68", sorted by (video, frame). A root that is not a folder is one
    `LandmarkFileError` line.
    """
    if split not in SPLITS and split != "all":
        raise LandmarkFileError(f"300-VW has no split {split!r} (valid: all, {', '.join(SPLITS)})")
    root = Path(root)
    if not root.is_dir():
        raise LandmarkFileError(f"300-VW folder not found: {root} is not a folder")
    folders = (root,) if images is None else (Path(images), root)
    present = sorted(p.name for p in root.iterdir() if (p / "annot").is_dir())
    problems = [Problem(f"{vid}/annot", "train", f"video {vid!r} is not one of 300-VW's 114 videos: {root / vid}")
                for vid in present if vid not in _SPLIT_OF and split in ("train", "all")]
    faces: list[FaceAnnotation] = []
    for vid in (v for v in present if _SPLIT_OF.get(v) in ((split,) if split != "all" else SPLITS)):
        own = _SPLIT_OF[vid]
        for path in sorted((root / vid / "annot").iterdir()):
            if path.suffix.lower() != ".pts":
                continue
            m = _FRAME.match(path.name)
            if m is None or int(m.group(1)) == 0:
                problems.append(Problem(f"{vid}/annot/{path.name}", own, f"frame file name is not NNNNNN.pts "
                                        f"(6 digits, from 000001): {path}"))
                continue
            number = int(m.group(1))
            source = f"{vid}/{number:06d}"
            if number in BROKEN.get(vid, ()):
                problems.append(Problem(source, own, f"frame {number} of video {vid} is listed as broken (its "
                                        f"annotation does not match the picture): {path}"))
                continue
            try:
                points = read_pts(path, n_points=N_POINTS).points
                image, extra = _image(folders, vid, number)
                faces.append(FaceAnnotation(source, image, points, np.full(N_POINTS, cv.VISIBLE, np.uint8), "ibug68",
                                            own, (), None, None, {"where": f"{vid}/annot/{path.name}", **extra}))
            except LandmarkFileError as exc:
                problems.append(Problem(source, own, str(exc) if str(path) in str(exc) else f"{exc}: {path}"))
    return faces, problems


def _av():
    try:
        import av
    except ImportError:
        raise BackendUnavailableError("decoding 300-VW's videos needs PyAV: pip install 'densereg[video]'") from None
    return av


def read_frame(path: str | Path, frame: int, *, seek: bool = True) -> np.ndarray:
    """Frame `frame` (0-based, in the order the decoder returns frames) of the video at `path`, as
    (H, W, 3) uint8 RGB.

    seek: jump to the key frame before it (by timestamp) and decode forward; a video whose timestamps
    do not give frame numbers, or that cannot seek, falls back to decoding from the start, which
    ``seek=False`` always does (the reference the test compares with). The two agree on constant-rate
    video (AVI has no other kind); on a video with gaps in its timestamps only ``seek=False`` counts
    frames. A video that does not decode, has no video stream, or has fewer frames is one
    `ImageFileError` line naming the file.
    """
    av = _av()
    p = regular_file(path, "video", ImageFileError, MAX_VIDEO_BYTES)
    if isinstance(frame, bool) or not isinstance(frame, (int, np.integer)) or frame < 0:
        raise ImageFileError(f"frame must be a non-negative integer, got {frame!r} for {p}")
    frame = int(frame)
    try:
        picture = None
        if seek:
            with av.open(str(p)) as container:
                stream = _stream(container, p)
                try:
                    picture = _seek_decode(container, stream, frame)
                except (av.FFmpegError, OSError):  # cannot seek: decode from the start below
                    picture = None
        if picture is None:
            with av.open(str(p)) as container:
                count = 0
                for count, decoded in enumerate(container.decode(_stream(container, p)), 1):
                    if count - 1 == frame:
                        picture = decoded.to_ndarray(format="rgb24")
                        break
            if picture is None:
                raise ImageFileError(f"video has {count} frames, frame {frame} requested: {p}")
        return picture
    except ImageFileError:
        raise
    except (av.FFmpegError, OSError, ValueError, EOFError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ImageFileError(f"video does not decode ({reason}): {p}") from None


def _stream(container, p: Path):
    if not container.streams.video:
        raise ImageFileError(f"video does not decode (no video stream in it): {p}")
    stream = container.streams.video[0]
    if stream.codec_context.width * stream.codec_context.height > MAX_IMAGE_PIXELS:
        raise ImageFileError(f"video frames have more than {MAX_IMAGE_PIXELS} pixels: {p}")
    return stream


def _seek_decode(container, stream, frame: int) -> np.ndarray | None:
    """Frame `frame` found by timestamp after a seek, as (H, W, 3) uint8, or None when timestamps cannot tell.

    Frame k is the one whose timestamp is k frame periods after the first decoded frame's (not the
    stream's start time: with B-frames an AVI's first picture comes a period late).
    """
    rate, base = stream.average_rate or stream.guessed_rate, stream.time_base
    if not rate or not base:
        return None
    first = next(iter(container.decode(stream)), None)
    if first is None or first.pts is None:
        return None
    if frame == 0:
        return first.to_ndarray(format="rgb24")
    for margin in _SEEK_MARGINS:  # a key frame's B-frames may need the group before it: back off and retry
        target = max(frame - margin, 0)
        container.seek(first.pts + int(target / (rate * base)), stream=stream, backward=True, any_frame=False)
        for decoded in container.decode(stream):
            if decoded.pts is None:
                return None
            index = round(float((decoded.pts - first.pts) * base * rate))
            if index == frame:
                return decoded.to_ndarray(format="rgb24")
            if index > frame:
                break
        if target == 0:
            break
    return None
