"""GGUF export for llama.cpp, Ollama and LM Studio: llama.cpp's own converter, then a check in llama.cpp itself.

Users leave training for local inference, and the bug they meet most is a converted model that behaves like the base
(the adapter lost on the way). So the export is not done when the file is written: the GGUF is loaded in llama.cpp
(the `llama-cpp-python` bindings) and its greedy answers to a probe set are compared with the merged Hugging Face
model's (they must agree) and with the base model's (they must not all agree). `medrl export --format gguf` prints
that check and writes it into the model card.

The tools come from one pinned `llama-cpp-python` source package: its vendored llama.cpp holds the converter
(`convert_hf_to_gguf.py` with its `conversion/` and `gguf-py/`), and building it gives the bindings the check runs.
`medrl gguf-setup` (`make gguf`) installs both; the converter of any llama.cpp checkout also works
(`--llama-cpp DIR` or `$LLAMA_CPP_DIR`).
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from training.errors import MedrlError

LLAMA_CPP_PYTHON = "0.3.36"
CONVERTER = "convert_hf_to_gguf.py"
# What the converter writes directly; the k-quants need llama.cpp's quantizer (through the bindings).
CONVERTER_TYPES = ("f32", "f16", "bf16", "q8_0")
QUANTIZED = {"q4_k_m": 15, "q5_k_m": 17, "q6_k": 18}  # llama.cpp's LLAMA_FTYPE_MOSTLY_* numbers
TYPES = CONVERTER_TYPES + tuple(QUANTIZED)
# The BPE pre-tokenizers the converter would recognise by hashing a real checkpoint's tokenizer output: a tokenizer
# with exactly this split (the embedded default copies Qwen2's) is stated as Qwen2's, since its own vocabulary gives
# a hash the converter has never seen. A tokenizer with any other split is left to the converter's hash.
QWEN2_SPLIT = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
# Run in a fresh interpreter with the converter's folder first on the path: state the pre-tokenizer when asked, then
# run the converter exactly as its own command line would.
# The projector's name table is sized by the vision tower's depth, and Qwen2.5-VL's merger is named like a block
# (`visual.merger.mlp.2`): a tower under 3 blocks deep (the embedded default's has 2) would lose the merger's second
# linear, so the table is built for at least 3 blocks (extra names only; a real tower has 32).
DRIVER = """
import runpy, sys
tools, pre, argv = sys.argv[1], sys.argv[2], sys.argv[3:]
sys.path[:0] = [tools, tools + "/gguf-py"]
if pre:
    from conversion import base
    base.TextModel.get_vocab_base_pre = lambda self, tokenizer: pre
if "--mmproj" in argv:
    import gguf
    table = gguf.get_tensor_name_map
    gguf.get_tensor_name_map = lambda arch, n_blocks: table(arch, max(n_blocks, 3))
sys.argv = [tools + "/convert_hf_to_gguf.py", *argv]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def tools_home() -> Path:
    """Where `medrl gguf-setup` puts the converter: beside the embedded models' cache ($MEDRL_CACHE or ~/.cache/medrl)."""
    root = Path(os.environ.get("MEDRL_CACHE") or Path.home() / ".cache" / "medrl")
    return root / f"llama.cpp-{LLAMA_CPP_PYTHON}"


def find_converter(explicit: str | Path | None = None) -> Path:
    """The llama.cpp folder holding the converter: `explicit`, else $LLAMA_CPP_DIR, else what gguf-setup installed."""
    for where in (explicit, os.environ.get("LLAMA_CPP_DIR")):
        if where and (Path(where) / CONVERTER).is_file():
            return Path(where)
        if where:
            raise MedrlError(f"{where}: no {CONVERTER} there (expected a llama.cpp checkout)")
    if (tools_home() / CONVERTER).is_file():
        return tools_home()
    raise MedrlError(
        "GGUF export needs llama.cpp's converter: run `make gguf` (or `medrl gguf-setup`), or pass --llama-cpp DIR "
        "(a llama.cpp checkout)"
    )


def bindings():
    """The llama.cpp bindings the check runs in, or a one-line error naming the setup command."""
    try:
        import llama_cpp
    except ImportError as e:
        raise MedrlError(
            "checking the GGUF in llama.cpp needs llama-cpp-python: run `make gguf` (or `medrl gguf-setup`)"
        ) from e
    return llama_cpp


def stated_pre_tokenizer(model_dir: Path) -> str:
    """'qwen2' when the tokenizer splits text exactly as Qwen2's does, else '' (the converter's hash decides)."""
    path = Path(model_dir) / "tokenizer.json"
    if not path.is_file():
        return ""
    tok = json.loads(path.read_text())
    pre = tok.get("pre_tokenizer") or {}
    parts = pre.get("pretokenizers", [pre])
    split = [p for p in parts if p.get("type") == "Split"]
    byte_level = [p for p in parts if p.get("type") == "ByteLevel"]
    same = (
        len(parts) == 2
        and len(split) == 1
        and split[0].get("pattern", {}).get("Regex") == QWEN2_SPLIT
        and split[0].get("behavior") == "Isolated"
        and len(byte_level) == 1
        and not byte_level[0].get("use_regex", True)
        and (tok.get("normalizer") or {}).get("type") == "NFC"
        and tok.get("model", {}).get("type") == "BPE"
    )
    return "qwen2" if same else ""


def convert(
    model_dir: Path, out_file: Path, outtype: str, tools: Path, name: str | None = None, mmproj: bool = False
) -> float:
    """Run llama.cpp's converter on a Hugging Face folder (`name`: the file's general.name, which llama.cpp and
    Ollama show, else the folder's name; `mmproj`: a VLM's vision side instead of its language model); returns its
    wall time in seconds."""
    start = time.perf_counter()
    cmd = (
        [
            sys.executable,
            "-c",
            DRIVER,
            str(tools),
            stated_pre_tokenizer(model_dir),
            str(model_dir),
            "--outfile",
            str(out_file),
            "--outtype",
            outtype,
        ]
        + (["--model-name", name] if name else [])
        + (["--mmproj"] if mmproj else [])
    )
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0 or not out_file.is_file():
        last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise MedrlError(f"{model_dir}: llama.cpp's converter failed: {last}")
    return time.perf_counter() - start


def quantize(src: Path, dst: Path, kind: str) -> float:
    """A k-quant of an f16 GGUF through llama.cpp's own quantizer; returns its wall time in seconds."""
    llama_cpp = bindings()
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = QUANTIZED[kind]
    params.nthread = max(1, os.cpu_count() or 1)
    start = time.perf_counter()
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params))
    if rc != 0 or not dst.is_file():
        raise MedrlError(f"{src}: llama.cpp's quantizer failed ({kind}, code {rc})")
    return time.perf_counter() - start


def llama_greedy(
    gguf: Path, texts: list[str], prompts: list[list[int]], n: int, stop: set[int]
) -> tuple[list[list[int]], list[list[int]]]:
    """llama.cpp's own tokenization of `texts` (specials parsed, no BOS added), and the greedy continuations of the
    token-id `prompts` in it: the argmax of its own logits, token by token."""
    import numpy as np

    llama_cpp = bindings()
    longest = max(len(p) for p in prompts) + n + 1
    llm = llama_cpp.Llama(
        model_path=str(gguf),
        n_ctx=max(256, longest),
        n_threads=max(1, os.cpu_count() or 1),
        logits_all=True,
        verbose=False,
    )
    try:
        tokenized = [llm.tokenize(t.encode(), add_bos=False, special=True) for t in texts]
        out = []
        for ids in prompts:
            llm.reset()
            llm.eval(ids)
            got: list[int] = []
            for _ in range(n):
                tok = int(np.argmax(llm.scores[llm.n_tokens - 1]))
                got.append(tok)
                if tok in stop:
                    break
                llm.eval([tok])
            out.append(got)
        return tokenized, out
    finally:
        llm.close()


def hf_greedy(model, prompts: list[list[int]], n: int, stop: set[int]) -> list[list[int]]:
    """The same greedy continuations in a Hugging Face model (fp32 compute)."""
    import torch

    out = []
    with torch.no_grad():
        for ids in prompts:
            seq = torch.tensor([ids])
            got: list[int] = []
            past = None
            step = seq
            for _ in range(n):
                res = model(input_ids=step, cache=past, use_cache=True)
                past = res.cache  # the cache the next call extends
                tok = int(res.logits[0, -1].argmax())
                got.append(tok)
                if tok in stop:
                    break
                step = torch.tensor([[tok]])
            out.append(got)
    return out


def setup(home: Path | None = None, version: str = LLAMA_CPP_PYTHON, log=print) -> dict:
    """Install the GGUF tools from one `llama-cpp-python` source package: the vendored converter into `home`, and the
    bindings (llama.cpp compiled here for this CPU, text models only) into this interpreter's environment. What is
    already there is kept, so a second run takes a second. Returns what it did and the wall times."""
    home = Path(home) if home else tools_home()
    done: dict = {"version": version, "home": str(home)}
    need_converter = not (home / CONVERTER).is_file()
    need_bindings = _installed("llama-cpp-python") != version
    missing = [d for d in CONVERTER_NEEDS if _installed(d) is None]
    if missing:
        log(f"medrl: installing what the converter imports: {', '.join(missing)}")
        if subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "--no-compile", *missing]
        ).returncode:
            raise MedrlError(f"pip could not install {', '.join(missing)} (the lines above)")
    if not (need_converter or need_bindings):
        log(f"medrl: the GGUF tools are installed (llama-cpp-python {version}; converter in {home})")
        return done
    with tempfile.TemporaryDirectory(prefix="medrl-gguf-") as tmp:
        sdist = _download(version, Path(tmp))  # one source package: the converter and the bindings agree
        if need_converter:
            start = time.perf_counter()
            _extract_converter(sdist, home)
            done["converter_s"] = round(time.perf_counter() - start, 1)
            log(f"medrl: llama.cpp's converter ({version}) in {home}")
        if need_bindings:
            log(
                f"medrl: building llama-cpp-python {version}: llama.cpp compiled for this CPU, minutes on 2 cores ..."
            )
            start = time.perf_counter()
            env = {**os.environ, "CMAKE_ARGS": os.environ.get("CMAKE_ARGS", BUILD_ARGS)}
            pip = [sys.executable, "-m", "pip", "install", "-q", "--no-compile", str(sdist)]
            if subprocess.run(pip, env=env).returncode != 0:
                raise MedrlError(
                    f"building llama-cpp-python {version} failed (it needs cmake >= 3.21 and a C++ compiler; the "
                    "lines above say what stopped it)"
                )
            done["build_s"] = round(time.perf_counter() - start, 1)
            log(f"medrl: llama-cpp-python {version} built and installed in {done['build_s']} s")
    return done


# Imported by the converter beyond medrl's own dependencies (llama.cpp's requirements-convert_hf_to_gguf.txt)
CONVERTER_NEEDS = ("sentencepiece", "protobuf")
# llama.cpp's text path only (the multimodal library is another few minutes of compiling, for VLM export later)
BUILD_ARGS = "-DLLAVA_BUILD=OFF"


def _installed(dist: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def _download(version: str, into: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:"]
    if subprocess.run([*cmd, f"llama-cpp-python=={version}", "-d", str(into)]).returncode != 0:
        raise MedrlError(
            f"pip could not download the llama-cpp-python {version} source package (the lines above)"
        )
    return next(into.glob("llama_cpp_python-*.tar.gz"))


def _extract_converter(sdist: Path, home: Path) -> None:
    """The converter, its model classes and its own gguf-py from the package's vendored llama.cpp, placed atomically."""
    vendored = f"{sdist.name[: -len('.tar.gz')]}/vendor/llama.cpp/"
    keep = (CONVERTER, "conversion/", "gguf-py/", "LICENSE")
    home.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".llama.cpp-", dir=home.parent))
    with tarfile.open(sdist) as tar:
        members = [m for m in tar.getmembers() if m.name.startswith(vendored)]
        members = [m for m in members if m.name[len(vendored) :].startswith(keep)]
        for m in members:
            m.name = m.name[len(vendored) :]
        tar.extractall(staging, members=members, filter="data")
    if home.exists():
        shutil.rmtree(home)
    staging.rename(home)
