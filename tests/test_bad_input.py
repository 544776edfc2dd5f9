"""Bad input, as a new user types it: every mistake gets one `error: ...` line that says what was wrong and what to
type instead, and exit status 2, before any expensive work; no file qbench reads runs code (weights_only)."""

import builtins
import json
import pickle
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import qbench
from qbench.checkpoints import save_native
from qbench.cli import app
from qbench.inputs import UserError
from qbench.presets import get_preset
from qbench.tokenizers import builtin_tokenizer

SPEED = ["speed", "--model", "tiny-cobra", "--engine", "eager", "--new-tokens", "2", "--repeats", "1"]
TRAIN = ["train", "--model", "tiny-llava", "--steps", "2", "--batch-size", "2", "--recipe", "cobra"]


def qbench_cli(*args: str):
    return CliRunner().invoke(app, [str(arg) for arg in args])


STEPS = ("building ", "timing ", "loading ", "writing ")  # what a command says as a long step starts


def refused(result, *phrases: str) -> str:
    """The one error line of a refused command, checked for each phrase; before it, at most the lines that said
    which long step had started (the mistake showed only once the step read the file)."""
    assert result.exit_code == 2, (result.output, result.exception)
    *steps, error = [line for line in result.output.strip().splitlines() if line.strip()]
    assert error.startswith("error: ") and all(line.startswith(STEPS) for line in steps), result.output
    for phrase in phrases:
        assert phrase in error, error
    return error


class Payload:
    """A pickle that, once unpickled, creates a file: harmless, and proof that the pickle ran."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return builtins.open, (str(self.marker), "w")


@pytest.fixture
def marker(tmp_path) -> Path:
    path = tmp_path / "payload-ran"
    yield path
    assert not path.exists(), "the planted pickle's code ran"


@pytest.fixture(scope="module")
def llava_data(tmp_path_factory) -> list[str]:
    """A two-example LLaVA conversation file: the quickest training data to give `qbench train`."""
    from PIL import Image

    root = tmp_path_factory.mktemp("llava")
    entries = []
    for index, colour in enumerate(["red", "blue"]):
        Image.new("RGB", (64, 64), colour).save(root / f"{index}.png")
        entries.append({"id": str(index), "image": f"{index}.png", "conversations": [
            {"from": "human", "value": "<image>\nWhat color is the image?"}, {"from": "gpt", "value": colour}]})
    (root / "llava.json").write_text(json.dumps(entries))
    return ["--data", str(root / "llava.json"), "--image-dir", str(root)]


def missing_gpu() -> str:
    """A --device this machine does not have: cuda without a GPU, else one GPU more than it has."""
    return f"cuda:{torch.cuda.device_count()}" if torch.cuda.is_available() else "cuda"


# --- options --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("option,value", [("--batch-size", "-1"), ("--batch-size", "0"), ("--limit", "0")])
def test_run_refuses_a_count_below_one(option, value, tmp_path):
    refused(qbench_cli("run", "--model", "tiny-cobra", "--suite", "mini", option, value, "--output", tmp_path),
            option, "greater than or equal to 1", "`qbench run --help` lists the options")


@pytest.mark.parametrize("tokens", ["0", "-4", "abc", "256,x"])
def test_speed_refuses_token_counts_that_are_not_whole_numbers_of_one_or_more(tokens, tmp_path):
    refused(qbench_cli(*SPEED, "--tokens", tokens, "--output", tmp_path), "--tokens", "e.g. --tokens 256,576",
            repr(tokens))
    assert not (tmp_path / "speed.json").exists()


@pytest.mark.parametrize("command", [["run", "--model", "tiny-cobra", "--suite", "mini"], SPEED, TRAIN])
def test_a_device_this_machine_lacks_is_refused(command, tmp_path):
    out = tmp_path / "out"
    refused(qbench_cli(*command, "--device", missing_gpu(), "--output", out),
            f"--device {missing_gpu()}")
    assert not out.exists()  # refused before anything was written, trained or measured


@pytest.mark.parametrize("command", [["run", "--model", "tiny-cobra", "--suite", "mini"], SPEED])
def test_an_unknown_device_lists_the_ones_to_use(command):
    refused(qbench_cli(*command, "--device", "gpu"), "unknown --device 'gpu'", "use cpu, cuda or cuda:N")


def test_debug_shows_the_traceback_instead():
    result = qbench_cli("--debug", *SPEED, "--device", "gpu")
    assert isinstance(result.exception, UserError) and "unknown --device" in str(result.exception)
    result = CliRunner(env={"QBENCH_DEBUG": "1"}).invoke(app, [*SPEED, "--device", "gpu"])
    assert isinstance(result.exception, UserError)


# --- output folders -------------------------------------------------------------------------------------------------
def test_train_into_a_folder_it_cannot_write_stops_before_the_first_step(tmp_path, llava_data):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    refused(qbench_cli(*TRAIN, *llava_data, "--output", blocker / "run"),
            f"--output {blocker / 'run'}: cannot write there", "Not a directory")
    refused(qbench_cli("run", "--model", "tiny-cobra", "--suite", "mini", "--output", blocker / "runs"),
            "--output", "cannot write there")


@pytest.mark.skipif(not Path("/sys").is_dir(), reason="needs /sys, which no one (not even root) may write into")
def test_train_into_a_folder_refusing_writes_stops_before_the_first_step(llava_data):
    """A real probe file is written: chmod does not stop root (the tests run as root here), /sys does."""
    refused(qbench_cli(*TRAIN, *llava_data, "--output", "/sys"), "--output /sys: cannot write there",
            "choose a folder you can write to")


# --- files qbench reads --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def native(tmp_path_factory) -> Path:
    return save_native(qbench.load_model("tiny-cobra"), tmp_path_factory.mktemp("weights") / "tiny-cobra")


def damaged_copy(native: Path, where: Path, file: str, content: bytes | None) -> Path:
    """A copy of a qbench checkpoint folder with `file` replaced by `content` (None: removed)."""
    where.mkdir()
    for part in native.iterdir():
        (where / part.name).write_bytes(part.read_bytes())
    if content is None:
        (where / file).unlink()
    else:
        (where / file).write_bytes(content)
    return where


@pytest.mark.parametrize("file,content,problem", [
    ("model.safetensors", b"garbage", "{folder}/model.safetensors is not a readable safetensors file"),
    ("model.safetensors", None, "{folder} is neither a qbench checkpoint (spec.json + model.safetensors)"),
    ("spec.json", b"{\n", "{folder}/spec.json cannot be read as JSON"),
    ("spec.json", b'{"name": "x"}', "{folder}/spec.json is not a usable qbench model spec: vision must be an object"),
])
def test_a_damaged_checkpoint_names_its_file(native, tmp_path, file, content, problem):
    folder = damaged_copy(native, tmp_path / "ckpt", file, content)
    refused(qbench_cli(*SPEED, "--checkpoint", folder, "--device", "cpu", "--output", tmp_path / "speed"),
            problem.format(folder=folder))


def test_a_truncated_safetensors_is_named_before_data_is_loaded_or_a_model_built(native, tmp_path):
    cut = (native / "model.safetensors").read_bytes()
    folder = damaged_copy(native, tmp_path / "ckpt", "model.safetensors", cut[: len(cut) // 2])
    for source in (["--model", folder], ["--model", "tiny-cobra", "--checkpoint", folder]):
        refused(qbench_cli("run", *source, "--suite", "mini", "--data-dir", tmp_path / "data", "--output",
                           tmp_path / "runs"),
                f"{folder / 'model.safetensors'} is not a readable safetensors file", "download it again")
    assert not (tmp_path / "data").exists()


def test_native_format_without_spec_json_says_what_a_checkpoint_folder_holds(tmp_path):
    refused(qbench_cli(*SPEED, "--checkpoint", f"native:{tmp_path}", "--device", "cpu", "--output", tmp_path / "s"),
            f"{tmp_path / 'spec.json'} is missing", "spec.json and model.safetensors")


def test_a_truncated_speed_json_is_named_with_what_to_do(tmp_path):
    (tmp_path / "speed.json").write_text('{"schema": "qbench.speed/1", "rows": [')
    refused(qbench_cli(*SPEED, "--device", "cpu", "--output", tmp_path), f"{tmp_path / 'speed.json'} cannot be read",
            "delete it to measure every point again, or choose another --output")


# --- pickles: refused, never run -----------------------------------------------------------------------------------
@pytest.mark.parametrize("how", ["torch.save", "pickle"])
def test_a_planted_pickle_in_the_trainers_resume_state_does_not_run(tmp_path, llava_data, marker, how):
    resume = tmp_path / "run" / "resume"
    resume.mkdir(parents=True)
    state = {"identity": Payload(marker)}
    if how == "torch.save":
        torch.save(state, resume / "trainer.pt")
    else:
        (resume / "trainer.pt").write_bytes(pickle.dumps(state, protocol=2))
    refused(qbench_cli(*TRAIN, *llava_data, "--output", tmp_path / "run", "--device", "cpu"),
            f"{resume / 'trainer.pt'} holds Python objects besides tensors", "never unpickles",
            f"delete {resume} to start this training afresh")


@pytest.mark.parametrize("tiny,full,fmt,layout", [
    ("tiny-cobra", "cobra-3b", "cobra", "cobra+3b/checkpoints/latest-checkpoint.pt"),
    ("tiny-ml-mamba", "ml-mamba-2.7b", "mlmamba", "latest-checkpoint.pt"),
])
def test_a_planted_pickle_in_a_published_checkpoint_does_not_run(tmp_path, marker, monkeypatch, tiny, full, fmt,
                                                                 layout):
    monkeypatch.setenv("QBENCH_HUB_DIR", str(tmp_path / "hub"))  # the full preset's tokenizer, made here
    builtin_tokenizer("qbench-tiny-neox").save_pretrained(tmp_path / "hub" / get_preset(full).tokenizer)
    for tower in get_preset(full).vision.weights.values():  # looked for only: the pickle is refused before they are read
        (tmp_path / "hub" / tower).mkdir(parents=True)
    planted = tmp_path / "repo" / layout
    planted.parent.mkdir(parents=True)
    torch.save({"model": {"projector": Payload(marker)}}, planted)
    # the format named, or the path alone (read as the full preset's published format, recognised first)
    for model, source in ((tiny, f"{fmt}:{tmp_path / 'repo'}"), (full, str(planted))):
        refused(qbench_cli(*SPEED[:2], model, *SPEED[3:], "--checkpoint", source, "--device", "cpu",
                           "--allow-slow", "--output", tmp_path / "speed"),  # a full preset: its .pt is refused
                f"{planted} holds Python objects besides tensors and plain data (io.open)", "never unpickles",
                "published checkpoint again")


# --- what is missing is found before the expensive work ---------------------------------------------------------
@pytest.mark.parametrize("command", [
    ["run", "--model", "q-mamba", "--suite", "mini", "--data-dir", "{tmp}/data", "--output", "{tmp}/out"],
    ["train", "--model", "q-mamba", "--steps", "2", "--output", "{tmp}/out"],
])
def test_a_missing_tokenizer_is_named_before_data_or_a_model_is_made(command, tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.delenv("QBENCH_HUB_DIR", raising=False)
    refused(qbench_cli(*(arg.format(tmp=tmp_path) for arg in command)),
            "cannot find tokenizer 'xiuyul/mamba-2.8b-zephyr'", "hf download xiuyul/mamba-2.8b-zephyr")
    assert not (tmp_path / "data").exists() and not (tmp_path / "out").exists()


@pytest.fixture
def empty_hub(tmp_path, monkeypatch) -> Path:
    """No hub cache and no $QBENCH_HUB_DIR yet (the hub is offline in the tests): nothing is on this machine."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.delenv("QBENCH_HUB_DIR", raising=False)
    return tmp_path / "hub"


COBRA_REPOS = {"checkpoint": "han1997/cobra", "vision tower dinov2": "facebook/dinov2-with-registers-large",
               "vision tower siglip": "google/siglip-so400m-patch14-384", "tokenizer": "xiuyul/mamba-2.8b-zephyr"}


def test_every_missing_repository_is_named_at_once_with_its_download_line(empty_hub, tmp_path, monkeypatch):
    run = ["run", "--model", "cobra", "--suite", "mini", "--data-dir", tmp_path / "data", "--output", tmp_path / "out"]
    line = refused(qbench_cli(*run), "cobra-3b needs 4 hub repositories", "`qbench models --hub cobra-3b` lists them")
    for role, repo in COBRA_REPOS.items():
        assert f"{role} {repo}" in line and f"hf download {repo} " in line
        assert f"--local-dir $QBENCH_HUB_DIR/{repo}`" in line
    assert "--include cobra+3b/config.json --include cobra+3b/checkpoints/latest-checkpoint.pt" in line
    tokenizer = empty_hub / COBRA_REPOS["tokenizer"]  # one copied where QBENCH_HUB_DIR says: three left
    tokenizer.mkdir(parents=True)
    (tokenizer / "tokenizer.json").write_text("{}")  # only looked for here: read when a model is built
    monkeypatch.setenv("QBENCH_HUB_DIR", str(empty_hub))
    line = refused(qbench_cli(*run), "cobra-3b needs 3 hub repositories", f"--local-dir {empty_hub}/han1997/cobra`")
    assert COBRA_REPOS["tokenizer"] not in line
    assert not (tmp_path / "data").exists() and not (tmp_path / "out").exists()


def test_models_hub_lists_what_a_preset_reads_where_it_goes_and_whether_it_is_here(empty_hub, monkeypatch):
    (empty_hub / COBRA_REPOS["tokenizer"]).mkdir(parents=True)
    monkeypatch.setenv("QBENCH_HUB_DIR", str(empty_hub))
    result = qbench_cli("models", "--hub", "cobra", "--json")
    assert result.exit_code == 0, result.output
    listed = {tuple(repo["roles"]): repo for repo in json.loads(result.output)}
    assert {roles[0]: repo["repo_id"] for roles, repo in listed.items()} == COBRA_REPOS
    for repo in listed.values():
        assert repo["local_dir"] == str(empty_hub / repo["repo_id"])
        assert repo["download"].startswith(f"hf download {repo['repo_id']} ")
        assert repo["download"].endswith(f"--local-dir {empty_hub / repo['repo_id']}")
        assert repo["found"] == (str(empty_hub / repo["repo_id"]) if repo["roles"] == ["tokenizer"] else None)
    text = qbench_cli("models", "--hub", "llava")
    assert text.exit_code == 0 and "checkpoint + tokenizer: llava-hf/llava-1.5-7b-hf (missing)" in text.output
    assert "reads nothing from the hub" in qbench_cli("models", "--hub", "tiny-cobra").output
    refused(qbench_cli("models", "--hub", "kobra"), "unknown model 'kobra'")
