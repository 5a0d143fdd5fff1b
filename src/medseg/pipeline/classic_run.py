"""Running one classical method: ``medseg classic METHOD`` and the benchmark's binary runs.

:func:`segment_path` segments one image file or a folder of images with a method of
:data:`medseg.classic.CLASSIC`; :func:`segment_binary` segments a foreground with oracle seeds
(:func:`medseg.pipeline.classic_seeds.oracle_seeds`); :func:`parse_method_options` types
``--set key=value`` options by the method's signature.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medseg.data.dataset import Dataset, load_dataset, read_case
from medseg.errors import ConfigError, DatasetError
from medseg.fileutil import check_writable
from medseg.io import Image, write_image
from medseg.pipeline.classic_seeds import oracle_seeds
from medseg.registry import Registry

#: Methods that segment the foreground (union of labels) from oracle seeds or no input.
BINARY_METHODS = ("threshold", "otsu", "region_grow", "graph_cut", "level_set")
#: Methods that learn every label from the training cases.
TRAINED_METHODS = ("multi_atlas", "forest")
#: The methods ``medseg classic benchmark`` runs by default.
DEFAULT_METHODS = ("otsu", "region_grow", "graph_cut", "level_set", "multi_atlas", "forest")
#: Options each method gets in the benchmark unless ``method_options`` says otherwise: region
#: growing in confidence mode (SimpleITK's ConfidenceConnected: needs only the seeds), the
#: atlases registered affinely and fused from at most 5 (the issue's speed budget); graph cut
#: with smoothness 10 (chosen on Hippocampus and Montgomery training cases: 0.84 and 0.66
#: Dice there, against 0.26 and 0.66 at 1).
DEFAULT_OPTIONS: dict[str, dict[str, Any]] = {
    "region_grow": {"mode": "confidence"},
    "graph_cut": {"smoothness": 10.0},
    "multi_atlas": {"k": 5, "transform": "affine", "jobs": 2},
    "forest": {"n_estimators": 50},
}


#: The modules of ``medseg.classic`` that register methods (``medseg.classic`` imports them).
_METHOD_MODULES = ("threshold", "region", "graph_cut", "level_set", "atlas", "forest")


def classic_registry() -> Registry:
    """``medseg.classic.CLASSIC`` with every method module imported (so it is complete even
    where the package's ``__init__`` does not import one; a missing module is skipped)."""
    import importlib

    from medseg.classic.registry import CLASSIC

    for name in _METHOD_MODULES:
        try:
            importlib.import_module(f"medseg.classic.{name}")
        except ModuleNotFoundError as err:
            if err.name != f"medseg.classic.{name}":
                raise
    return CLASSIC


def segment_binary(
    method: str, image: Image, reference: Image, **options: Any
) -> tuple[Image, float]:
    """Segment the foreground of ``image`` with a binary method and oracle seeds.

    Args:
        method: one of :data:`BINARY_METHODS`.
        image: one channel ``(*spatial)``.
        reference: the reference label map the oracle seeds come from.
        **options: the method's keyword options (override the benchmark's defaults).

    Returns:
        The label map (1 = foreground) and the method's seconds (seeds and I/O excluded).
    """
    classic = classic_registry()

    seeds = oracle_seeds(reference)
    options = {**DEFAULT_OPTIONS.get(method, {}), **options}
    if method == "threshold" and "lower" not in options and "upper" not in options:
        # the oracle band: the reference foreground's 5th to 95th intensity percentiles
        values = np.asarray(image.array)[np.asarray(reference.array) > 0]
        if values.size:
            options["lower"], options["upper"] = (float(v) for v in np.percentile(values, (5, 95)))
    args: tuple[Any, ...] = {
        "threshold": (),
        "otsu": (),
        "region_grow": (seeds.foreground,),
        "graph_cut": (seeds.scribble, seeds.background),
        "level_set": (seeds.box,),
    }[method]
    start = time.perf_counter()
    result = classic.build(method, image, *args, **options)
    seconds = time.perf_counter() - start
    mask = np.asarray(result.array) > 0  # otsu with classes > 2: every class above 0
    return image.with_array(mask.astype(np.uint8)), seconds


class _CaseReader:
    """Reads a case's ``channel`` and its reference, checking the channel exists."""

    def __init__(self, dataset: Dataset, channel: int) -> None:
        self.dataset = dataset
        self.channel = channel

    def __call__(self, case_id: str) -> tuple[Image, Image]:
        image, label = read_case(self.dataset.case(case_id))
        if label is None:
            raise DatasetError(f"{self.dataset.root}: case '{case_id}' has no label")
        if not 0 <= self.channel < image.num_channels:
            raise DatasetError(
                f"{self.dataset.case(case_id).image_paths[0]}: case '{case_id}' has "
                f"{image.num_channels} channel(s); channel {self.channel} does not exist"
            )
        return image.with_array(image.channels_first()[self.channel]), label


def parse_method_options(method: str, pairs: Sequence[str]) -> dict[str, Any]:
    """``["key=value", ...]`` -> keyword options of ``method``, typed by its signature.

    A value is converted to the parameter's annotated type: ``int``, ``float``, ``bool``
    (true/false/yes/no/1/0), a ``Literal`` choice, a tuple or sequence of numbers
    (comma-separated: ``sigmas_mm=0.5,1,2``), ``none`` for an optional one, and an image path
    for an array or ``Image`` (a mask); anything else stays text.

    Raises:
        ConfigError: an unknown method or option (naming the valid ones), a pair without
            ``=``, or a value that does not fit the type (naming the option).

    Example:
        >>> parse_method_options("otsu", ["classes=3"])
        {'classes': 3}
    """
    import typing

    classic = classic_registry()
    builder = classic.get(method)
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise ConfigError(f"--set {pair!r}: expected key=value, e.g. iterations=50")
        options[key] = text.strip()
    classic.check_options(method, options)
    function = builder.__init__ if isinstance(builder, type) else builder
    try:
        hints = typing.get_type_hints(function)
    except Exception:  # an annotation that cannot be resolved: keep the text
        hints = {}
    return {key: _typed(method, key, text, hints.get(key)) for key, text in options.items()}


def _typed(method: str, key: str, text: str, hint: Any) -> Any:
    import types
    import typing

    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if text.lower() == "none" and type(None) in args:
            return None
        for candidate in (a for a in args if a is not type(None)):
            try:
                return _typed(method, key, text, candidate)
            except ConfigError:
                continue
        raise ConfigError(f"{method} option {key}={text!r}: expected {_name(hint)}")
    try:
        if origin is typing.Literal:
            for choice in args:
                if str(choice) == text:
                    return choice
            raise ValueError
        if hint is bool:
            words = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
            return words[text.lower()]
        if hint in (int, float):
            value = hint(text)
            if not math.isfinite(value):
                raise ValueError
            return value
        if origin in (tuple, list) or str(origin) == "<class 'collections.abc.Sequence'>":
            item = next((a for a in args if a is not Ellipsis), str)
            values = [_typed(method, key, t.strip(), item) for t in text.split(",") if t.strip()]
            return tuple(values) if origin is tuple else values
        if hint is np.ndarray or hint is Image:
            from medseg.io import read_image

            mask = read_image(text)
            return mask if hint is Image else np.asarray(mask.array)
    except (ValueError, KeyError):
        raise ConfigError(f"{method} option {key}={text!r}: expected {_name(hint)}") from None
    return text


def _name(hint: Any) -> str:
    import typing

    if typing.get_origin(hint) is typing.Literal:
        return "one of " + ", ".join(str(a) for a in typing.get_args(hint))
    return getattr(hint, "__name__", str(hint))


def find_images(folder: Path) -> list[tuple[str, list[Path]]]:
    """``(case id, channel files)`` of a folder of images, read as ``medseg predict`` reads
    them (``medseg.inference.find_input_cases``: ``CASE_0000<ending>``... or plain names, or
    a dataset folder's ``imagesTs``), sorted by case id.

    Raises:
        DatasetError: no image in the folder.
    """
    from medseg.inference.inputs import find_input_cases

    return [(case.case_id, list(case.image_paths)) for case in find_input_cases(folder)]


def atlas_pairs(dataset: str | os.PathLike[str], *, channel: int = 0) -> list[tuple[Image, Image]]:
    """Every labelled case of a dataset as ``(image, label)`` (the given channel): the
    atlases of ``multi_atlas`` or the training set of ``forest``.

    Raises:
        DatasetError: no labelled case, or ``channel`` beyond a case's channels.
    """
    data = load_dataset(dataset)
    read = _CaseReader(data, channel)
    pairs = [read(case.case_id) for case in data.cases if case.label_path is not None]
    if not pairs:
        raise DatasetError(f"{data.root}: no labelled case to use as atlas or training case")
    return pairs


def segment_path(
    method: str,
    input_path: str | os.PathLike[str],
    output_path: str | os.PathLike[str],
    *,
    options: Mapping[str, Any] | None = None,
    seeds: Sequence[Sequence[int]] = (),
    bg_seeds: Sequence[Sequence[int]] = (),
    init: str | os.PathLike[str] | None = None,
    atlases: str | os.PathLike[str] | None = None,
    channel: int = 0,
    overwrite: bool = False,
) -> list[Path]:
    """``medseg classic METHOD``: segment one image file, or every case of a folder.

    A file input writes the label map to ``output_path`` (a file); a folder input writes
    ``output_path/CASE<ending>`` per case (``medseg predict``'s layout). The method's extra
    inputs come from: ``seeds`` (``region_grow``'s seeds, ``graph_cut``'s foreground seeds),
    ``bg_seeds`` (``graph_cut``), ``init`` (``level_set``: a mask file, or for a folder input
    a folder of ``CASE<ending>`` masks), ``atlases`` (a dataset: ``multi_atlas``'s atlases,
    ``forest``'s training cases).

    Args:
        method: a name in ``CLASSIC``.
        options: keyword options (:func:`parse_method_options` types them from text).
        channel: the image channel segmented.
        overwrite: replace existing outputs.

    Returns:
        The written label-map paths.

    Raises:
        ConfigError: an unknown method or option, or a required input missing (named).
        DatasetError, ImageIOError: unreadable or unfit images.
        OverwriteError: an output exists and ``overwrite`` is False.
    """
    classic = classic_registry()
    builder = classic.get(method)
    options = dict(options or {})
    classic.check_options(method, options)
    input_path, output_path = Path(input_path), Path(output_path)
    if input_path.is_dir():
        if output_path.resolve() == input_path.resolve():
            raise ConfigError(f"{output_path}: the output folder must differ from the input")
        jobs = [
            (files, output_path / f"{case_id}{_ending(files[0])}", case_id)
            for case_id, files in find_images(input_path)
        ]
    elif input_path.is_file():
        jobs = [([input_path], output_path, None)]
    else:
        raise DatasetError(f"{input_path}: no such image file or folder")
    for _, target, _ in jobs:
        check_writable(target, overwrite=overwrite)
    extra = _method_inputs(method, builder, seeds, bg_seeds, init, atlases, channel, options)
    written = []
    for files, target, case_id in jobs:
        image = _read_channel(files, channel)
        args = [a(image, case_id) if callable(a) else a for a in extra["args"]]
        if "segmenter" in extra:
            prediction = extra["segmenter"].predict(image)
        else:
            prediction = classic.build(method, image, *args, **options)
        target.parent.mkdir(parents=True, exist_ok=True)
        written.append(write_image(prediction, target, overwrite=overwrite))
    return written


def _ending(path: Path) -> str:
    from medseg.io import file_ending

    return file_ending(path)


def _read_channel(files: Sequence[Path], channel: int) -> Image:
    from medseg.data.case import Case

    image, _ = read_case(Case(files[0].name, tuple(files)))
    if not 0 <= channel < image.num_channels:
        raise DatasetError(
            f"{files[0]}: {image.num_channels} channel(s); channel {channel} does not exist"
        )
    return image.with_array(image.channels_first()[channel])


def _method_inputs(
    method: str,
    builder: Any,
    seeds: Sequence[Sequence[int]],
    bg_seeds: Sequence[Sequence[int]],
    init: str | os.PathLike[str] | None,
    atlases: str | os.PathLike[str] | None,
    channel: int,
    options: Mapping[str, Any],
) -> dict[str, Any]:
    """The positional inputs ``method`` takes after the image, by parameter name (a callable
    entry is resolved per case: ``(image, case_id) -> value``), or a fitted forest."""
    import inspect

    if isinstance(builder, type):  # the forest: fit on the --atlases dataset, then predict
        if atlases is None:
            raise ConfigError(f"{method}: pass --atlases DATASET (its labelled training cases)")
        pairs = atlas_pairs(atlases, channel=channel)
        segmenter = builder(**options).fit([p[0] for p in pairs], [p[1] for p in pairs])
        return {"args": [], "segmenter": segmenter}
    params = [
        p
        for p in list(inspect.signature(builder).parameters.values())[1:]
        if p.kind is p.POSITIONAL_OR_KEYWORD and p.default is p.empty
    ]
    args: list[Any] = []
    for param in params:
        if param.name in ("seeds", "fg_seeds"):
            if not seeds:
                raise ConfigError(f"{method} needs foreground seeds: --seed z,y,x (repeatable)")
            args.append([tuple(s) for s in seeds])
        elif param.name == "bg_seeds":
            if not bg_seeds:
                raise ConfigError(f"{method} needs background seeds: --bg-seed z,y,x")
            args.append([tuple(s) for s in bg_seeds])
        elif param.name == "init":
            if init is None:
                raise ConfigError(f"{method} needs an initial contour: --init MASK")
            args.append(_init_reader(Path(init)))
        elif param.name == "atlases":
            if atlases is None:
                raise ConfigError(f"{method} needs atlases: --atlases DATASET")
            args.append(atlas_pairs(atlases, channel=channel))
        else:
            raise ConfigError(f"{method}: the command line cannot provide '{param.name}'")
    return {"args": args}


def _init_reader(init: Path) -> Any:
    """``(image, case_id) -> bool mask``: the ``--init`` file, or ``CASE<ending>`` in a folder."""
    from medseg.io import read_image

    def read(image: Image, case_id: str | None) -> np.ndarray:
        path = init
        if init.is_dir():
            if case_id is None:
                raise ConfigError(f"--init {init}: a folder needs a folder input")
            matches = [p for p in init.iterdir() if p.name.startswith(case_id + ".")]
            if not matches:
                raise DatasetError(f"{init}: no initial mask for case '{case_id}'")
            path = matches[0]
        return np.asarray(read_image(path).array) > 0

    return read
