"""Where a pretrained diffusers model lives on this machine: a local folder, or a Hugging Face model
id already in the local cache. Nothing is downloaded: a missing id names the command that fetches it."""
from __future__ import annotations

import re
from pathlib import Path

from bench.core.errors import BenchError

HF_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


def local_folder(spec: str, key: str, fix: str) -> tuple[Path, str]:
    """(folder, kind) of `spec` for the setting `key`, kind "folder" or "hf-cache"; BenchError (ending in
    `fix`) when it names neither an existing folder nor a cached model id."""
    path = Path(spec).expanduser()
    if path.exists():
        return path, "folder"
    if HF_ID.fullmatch(spec) and not spec.startswith((".", "/", "~")):
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError
        try:
            return Path(snapshot_download(spec, local_files_only=True)), "hf-cache"
        except (LocalEntryNotFoundError, FileNotFoundError, OSError):
            raise BenchError(f"{key} {spec!r} is not in the local Hugging Face cache and bench does not "
                             f"download; fetch it once (huggingface-cli download {spec}) or {fix}") from None
    raise BenchError(f"{key} folder {spec} does not exist; {fix}")
