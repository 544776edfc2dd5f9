"""qbench's own format: a directory with spec.json (the VLMSpec) and model.safetensors (every weight)."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file

from qbench.checkpoints.base import (
    DAMAGED,
    CheckpointMismatch,
    describe,
    load_state,
    open_safetensors,
    shared_keys,
)
from qbench.folder import naming_full_disk
from qbench.inputs import read_json, unreadable
from qbench.backbones import BACKBONES
from qbench.projectors import PROJECTORS
from qbench.prompts import PROMPTS
from qbench.registry import UnknownName
from qbench.spec import SpecError, VLMSpec
from qbench.vision import TOWERS
from qbench.vlm import VLM, build_vlm

SPEC_FILE = "spec.json"
WEIGHTS_FILE = "model.safetensors"


def is_native(path: Path) -> bool:
    return (path / SPEC_FILE).is_file() and (path / WEIGHTS_FILE).is_file()


def save_native(vlm: VLM, directory: str | Path, metadata: dict[str, str] | None = None,
                state: dict[str, torch.Tensor] | None = None) -> Path:
    """Write spec.json and model.safetensors (a tensor several keys share, such as a tied LM head, stored once,
    under its first key). `state`: the weights to write when `vlm` does not hold them whole (a sharded training run
    gathers them first); `vlm.state_dict()` otherwise."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = vlm.state_dict() if state is None else state
    repeated = {key for keys in shared_keys(vlm) for key in keys[1:]}
    state = {k: v for k, v in state.items() if k not in repeated}
    tmp = directory / (WEIGHTS_FILE + ".tmp")
    with naming_full_disk(tmp):
        save_file({k: v.detach().contiguous().cpu() for k, v in state.items()}, tmp, metadata=metadata or {})
    tmp.replace(directory / WEIGHTS_FILE)  # never leave a half-written checkpoint under the real name
    (directory / SPEC_FILE).write_text(vlm.spec.to_json())
    return directory


NOT_NATIVE = (f"a qbench checkpoint folder holds the {SPEC_FILE} and {WEIGHTS_FILE} that qbench train writes; pass "
              "such a folder, or name a published checkpoint's format as FORMAT:PATH")


def read_spec(directory: str | Path) -> VLMSpec:
    """A checkpoint folder's spec, checked before anything is built: field types and sizes (VLMSpec.from_dict) and
    that its tower, projector, LLM and prompt are kinds qbench knows."""
    path = Path(directory) / SPEC_FILE
    document = read_json(path, NOT_NATIVE)
    try:
        spec = VLMSpec.from_dict(document)
        TOWERS[spec.vision.kind], PROJECTORS[spec.projector.kind], BACKBONES[spec.backbone.kind]
        PROMPTS[spec.prompt]
    except (SpecError, UnknownName) as error:
        raise unreadable(path, f"is not a usable qbench model spec: {error}",
                         "correct it, or write the checkpoint again (qbench train)") from None
    except (TypeError, KeyError, AttributeError) as error:
        raise unreadable(path, f"is not a qbench model spec ({type(error).__name__}: {error})", NOT_NATIVE) from None
    return spec


FLOAT_TYPES = ("F16", "BF16", "F32", "F64")  # safetensors' names of the dtypes a VLM's weights have


def check_float(path: Path, dtypes: dict[str, str]) -> None:
    """Every weight a VLM has is floating point: a tensor stored as anything else (e.g. F16 bytes relabelled I16)
    would be cast silently into nonsense, so it is refused."""
    odd = sorted(f"{key} ({dtype})" for key, dtype in dtypes.items() if dtype not in FLOAT_TYPES)
    if odd:
        raise CheckpointMismatch(f"{path} stores {describe(odd)} as non-floating-point tensors, which no qbench "
                                 f"model has: the file is damaged or was altered; {DAMAGED}")


def load_native(spec: VLMSpec | None, location: str, device: str | torch.device = "cpu",
                dtype: torch.dtype = torch.float32) -> VLM:
    """Build from the checkpoint's own spec (a given spec must agree) and load its weights."""
    directory = Path(location)
    saved = read_spec(directory)
    if spec is not None:
        saved_fields = saved.to_dict()
        differing = sorted(key for key, value in spec.to_dict().items()
                           if key not in ("name", "weights") and saved_fields[key] != value)
        if differing:
            raise CheckpointMismatch(f"{directory} holds {saved.name!r}, whose {', '.join(differing)} differ from "
                                     f"{spec.name!r}; load it as `--model {directory}`")
    with open_safetensors(directory / WEIGHTS_FILE) as weights:  # opened first: a damaged file fails fast
        shapes = {key: tuple(weights.get_slice(key).get_shape()) for key in weights.keys()}
        check_float(directory / WEIGHTS_FILE, {key: weights.get_slice(key).get_dtype() for key in weights.keys()})
        vlm = build_vlm(saved, device=device, dtype=dtype, init=False)
        return load_state(vlm, shapes, weights.get_tensor, source=str(directory))
