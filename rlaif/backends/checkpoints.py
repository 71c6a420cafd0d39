"""Hugging Face checkpoints: the embedded SmolLM2 converted once, any local one checked and loaded.

The embedded model ships as a Q4_1 GGUF file. transformers reads that file (``gguf_file=``),
dequantized to float32; doing so takes about 20 s, so it is done once and the result is saved
as an ordinary checkpoint directory in the cache (``$RLAIF_CACHE_DIR``, default
``~/.cache/rlaif``). The directory is written under a temporary name and renamed when complete,
so a conversion killed half-way is never taken for a checkpoint.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from rlaif.errors import ModelSpecError

#: name of the converted embedded model inside the cache
EMBEDDED_CHECKPOINT = "smollm2-135m-instruct-hf"


def cache_dir() -> Path:
    """Where converted checkpoints live: ``$RLAIF_CACHE_DIR`` or ``~/.cache/rlaif``."""
    value = os.environ.get("RLAIF_CACHE_DIR")
    return Path(value).expanduser() if value else Path.home() / ".cache" / "rlaif"


def train_imports():
    """transformers and torch, or a one-line hint to install the training extra."""
    try:
        import torch
        import transformers
    except ImportError as e:  # pragma: no cover - the 'train' extra
        raise ModelSpecError(
            "training needs the 'train' extra: pip install -c constraints.txt -e '.[train]'"
        ) from e
    # rlaif draws its own progress bars; transformers' per-file loading bars are noise here
    transformers.utils.logging.disable_progress_bar()
    return torch, transformers


def is_checkpoint(path: Path) -> bool:
    """True if ``path`` is a directory holding a transformers model config and weights."""
    if not (path / "config.json").is_file():
        return False
    return any(path.glob("*.safetensors")) or any(path.glob("*.bin"))


def check_checkpoint(path: Path, spec: str) -> Path:
    """``path`` if it is a checkpoint directory with a tokenizer; ModelSpecError otherwise."""
    if not path.exists():
        raise ModelSpecError(f"{spec}: no such directory {str(path)!r}")
    if not path.is_dir():
        raise ModelSpecError(
            f"{spec}: {str(path)!r} is a file; hf: takes a checkpoint directory "
            "(for a GGUF file write llamacpp:PATH)"
        )
    if not is_checkpoint(path):
        raise ModelSpecError(
            f"{spec}: {str(path)!r} is not a Hugging Face checkpoint (needs config.json and "
            "*.safetensors); train one with 'rlaif train dpo --out DIR'"
        )
    if not any((path / name).is_file() for name in ("tokenizer.json", "tokenizer_config.json")):
        raise ModelSpecError(f"{spec}: {str(path)!r} has no tokenizer files (tokenizer.json)")
    return path


def convert_embedded(dest: Path | None = None) -> Path:
    """Convert the embedded GGUF to a checkpoint directory once; return its path."""
    from rlaif.backends.llamacpp import embedded_model_path

    dest = dest or cache_dir() / EMBEDDED_CHECKPOINT
    if is_checkpoint(dest):
        return dest
    torch, transformers = train_imports()
    gguf = embedded_model_path()
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}-", dir=dest.parent))
    try:
        kwargs = {"gguf_file": gguf.name}
        tokenizer = transformers.AutoTokenizer.from_pretrained(str(gguf.parent), **kwargs)
        loaded = transformers.AutoModelForCausalLM.from_pretrained(
            str(gguf.parent), dtype=torch.float32, **kwargs
        )
        # A model read from GGUF is marked as quantized and refuses save_pretrained; its
        # weights are already dequantized, so copy them into a plain model of the same config.
        config = loaded.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        model.load_state_dict(loaded.state_dict())
        model.generation_config = loaded.generation_config
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if is_checkpoint(dest):  # another process (a launch's other rank) finished first
            shutil.rmtree(tmp, ignore_errors=True)
            return dest
        if dest.exists():  # a broken earlier attempt under the final name
            shutil.rmtree(dest)
        try:
            os.replace(tmp, dest)
        except OSError:
            if not is_checkpoint(dest):  # not the race with another process: a real failure
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def resolve_checkpoint(spec: str) -> Path:
    """The checkpoint directory a model string names, for training or the ``hf:`` backend.

    ``smollm2`` is converted from the embedded GGUF (once, then cached); ``hf:PATH`` or a plain
    directory path is checked to be a checkpoint. Other model strings cannot be trained.
    """
    spec = (spec or "").strip()
    if spec == "smollm2":
        return convert_embedded()
    arg = spec[3:] if spec.startswith("hf:") else spec
    if not arg:
        raise ModelSpecError("hf: needs a checkpoint directory: hf:PATH")
    if ":" in arg.split("/")[0] and not Path(arg).exists():
        raise ModelSpecError(
            f"{spec}: only smollm2 or a local checkpoint (hf:DIR) can be loaded with "
            "transformers; llamacpp: and openai: models cannot be trained"
        )
    return check_checkpoint(Path(arg).expanduser(), spec)


def load_tokenizer(path: Path):
    """The checkpoint's tokenizer, with a pad token (the EOS token when it has none)."""
    _, transformers = train_imports()
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(path))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer
