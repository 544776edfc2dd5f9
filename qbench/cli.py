"""The `qbench` command: one short function per subcommand, each calling into the package."""

from __future__ import annotations

import errno
import json

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from typer.core import TyperGroup

from qbench.inputs import UserError, process_rank


# Old spellings of options, still taken (hidden from --help) by every command that has the new one.
RENAMED = {"--out": "--output", "--batch": "--batch-size", "--plain-batch": "--plain-batch-size",
           "--encode-batch": "--encode-batch-size"}
VERBOSE = "--verbose"


class Commands(TyperGroup):
    """The subcommands, with one place that turns a user's mistake into one `error: ...` line and exit status 2:
    a bad option (typer's usage errors), a UserError/ValueError from the work, or a full disk. `qbench --debug`
    (QBENCH_DEBUG=1) re-raises the latter, traceback and all. Old option spellings (RENAMED) are read as the new ones,
    and `--verbose` is taken after the command too."""

    def invoke(self, ctx: typer.Context):
        try:
            return super().invoke(ctx)
        except typer.TyperException as error:  # click's usage errors: a bad option or command
            usage = getattr(error, "ctx", None)
            command = " ".join(["qbench", *usage.command_path.split()[1:]]) if usage else "qbench"
            fail(f"{error.format_message()} (`{command} --help` lists the options)")
        except (UserError, ValueError) as error:
            if ctx.find_root().params.get("debug"):
                raise
            fail(str(error))
        except OSError as error:
            if error.errno != errno.ENOSPC or ctx.find_root().params.get("debug"):
                raise
            fail(f"no space left on the device while writing {error.filename or 'a result'}: free some space and "
                 "run the same command again (what was written whole is kept; runs and trainings resume)")

    def get_params(self, ctx: typer.Context):
        return shown_as_flags(super().get_params(ctx))

    def get_command(self, ctx: typer.Context, name: str):
        command = super().get_command(ctx, name)
        if command is not None:
            shown_as_flags([*command.params, command.get_help_option(ctx)])
        return command

    def resolve_command(self, ctx: typer.Context, args: list[str]):
        name, command, rest = super().resolve_command(ctx, args)
        if ctx.parent is None and VERBOSE in rest:  # before the group's callback, which configures the output
            ctx.params["verbose"] = True
            rest = [arg for arg in rest if arg != VERBOSE]
        return name, command, renamed(command, rest)


def shown_as_flags(params: list) -> list:
    """The parameters, their flags shown as flags in --help (typer would show `<bool>`, as if they took a value)."""
    for param in params:
        if getattr(param, "is_flag", False):
            param.metavar = ""
    return params


def renamed(command, args: list[str]) -> list[str]:
    """`args` with the old spellings of `command`'s options (RENAMED) written the new way."""
    own = {name for param in getattr(command, "params", []) for name in param.opts}
    new_names = {old: new for old, new in RENAMED.items() if new in own and old not in own}
    result = []
    for arg in args:
        name, equals, value = arg.partition("=")
        result.append(new_names[name] + equals + value if name in new_names else arg)
    return result


app = typer.Typer(cls=Commands, help="Benchmark and evaluation harness for multimodal LLMs on Mamba backbones.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
console = Console()
errors = Console(stderr=True)
MAX_SEED = 2**31 - 1  # every seed option: torch, numpy and the batch order (seed * 100_003) all take it


@app.callback()
def main(debug: bool = typer.Option(False, "--debug", envvar="QBENCH_DEBUG",
                                    help="Show the traceback of an error instead of its one line."),
         verbose: bool = typer.Option(False, VERBOSE, envvar="QBENCH_VERBOSE",
                                      help="Show other packages' warnings, log lines and progress bars (hidden "
                                           "otherwise); also taken after the command.")) -> None:
    """qbench: accuracy, speed and memory of Mamba and Transformer VLMs, measured the same way."""
    from qbench.verbosity import configure

    configure(verbose)


def fail(message: str) -> None:
    """One `error: ...` line on stderr (stdout may carry data, as `compare --json`'s), and exit status 2."""
    errors.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


@app.command()
def models(as_json: bool = typer.Option(False, "--json", help="Print a JSON list instead of a table."),
           hub: str = typer.Option(None, metavar="MODEL", help="List every hub repository MODEL (a preset, alias or "
                                   "qbench checkpoint folder) reads, with the `hf download` line of each and where "
                                   "$QBENCH_HUB_DIR expects it.")) -> None:
    """List the model presets: aliases, parts, visual tokens, parameters and where their weights come from.

    Parameters are counted on the meta device: no memory is used. The table shows the total; `--json` also has the
    vision tower's, the projector's and the LLM's counts."""
    from qbench.presets import ALIASES, get_preset, preset_names
    from qbench.vlm import build_vlm

    if hub is not None:
        return hub_repos(hub, as_json)
    rows = []
    for name in preset_names():
        spec = get_preset(name)
        vlm = build_vlm(spec, device="meta")
        aliases = [alias for alias, target in ALIASES.items() if target == name]
        rows.append({"name": name, "aliases": aliases, "vision": spec.vision.kind, "projector": spec.projector.kind,
                     "backbone": spec.backbone.kind, "visual_tokens": vlm.visual_tokens,
                     **vlm.parameter_counts(), "weights": spec.weights})
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table(title="qbench model presets: visual tokens, parameters, weights", box=box.SIMPLE_HEAD,
                  padding=(0, 0), show_edge=False, caption="`qbench models --hub PRESET`: the hub repositories it "
                  "reads")
    for column in ("preset", "alias", "projector", "backbone", "tokens", "params", "weights"):
        table.add_column(column, no_wrap=True, justify="right" if column in PARAMETER_COLUMNS else "left")
    for row in rows:
        table.add_row(row["name"], ", ".join(row["aliases"]), row["projector"], row["backbone"],
                      str(row["visual_tokens"]), human(row["total_params"]),
                      row["weights"].partition(":")[2] or row["weights"])
    console.print(table)


PARAMETER_COLUMNS = {"tokens", "params"}


def hub_repos(model: str, as_json: bool) -> None:
    """`qbench models --hub MODEL`: the repositories loading MODEL reads, whether each is here, how to fetch it."""
    import os

    from qbench.checkpoints import resolve_source
    from qbench.checkpoints.repos import HUB_DIR_ENV, needed_repos

    source = resolve_source(model)
    spec, repos = source.spec, needed_repos(source)
    found = {repo.repo_id: repo.found() for repo in repos}
    if as_json:
        print(json.dumps([{"repo_id": r.repo_id, "roles": list(r.roles), "files": list(r.files),
                           "found": found[r.repo_id], "local_dir": r.local_dir(), "download": r.download()}
                          for r in repos], indent=2))
        return
    if not repos:
        console.print(f"{spec.name} reads nothing from the hub: its weights and tokenizer are local, built in or "
                      "random", highlight=False)
        return
    root = os.environ.get(HUB_DIR_ENV)
    console.print(f"{spec.name} reads {len(repos)} hub repositories; {HUB_DIR_ENV}="
                  f"{root or '(unset: set it to the folder that holds them)'}", highlight=False, soft_wrap=True)
    for repo in repos:
        state = f"[green]found[/green] {found[repo.repo_id]}" if found[repo.repo_id] else "[red]missing[/red]"
        console.print(f"{repo.role}: {repo.repo_id} ({state})", highlight=False, soft_wrap=True)
        console.print(f"  {repo.download()}", highlight=False, soft_wrap=True, markup=False)


@app.command()
def report(results: str = typer.Option("results", help="Folder whose runs/, speed/, ablation/ and train/ are read "
                                                       "(runs and speed sweeps: unless --runs, --speed say where)."),
           runs: list[str] = typer.Option([], help="Run folders, or folders of them, to read instead of "
                                                   "RESULTS/runs (repeatable)."),
           speed: list[str] = typer.Option([], help="Speed folders (speed.json), or folders of them, to read "
                                                    "instead of RESULTS/speed (repeatable)."),
           device: str = typer.Option(None, help="Only measurements on this device: cpu, cuda (any GPU) or part "
                                                 "of a GPU's name (e.g. H100)."),
           tracked: bool = typer.Option(False, "--tracked", help="Only result files git tracks (the project's "
                                                                 "published record: make report)."),
           output: str = typer.Option("report", help="Where the tables, figures, README.md and report.json go; a "
                                                     "folder holding a report of other inputs is refused.")) -> None:
    """Tables (Markdown, LaTeX, CSV), figures (PNG, PDF) and a README from the result files asked for."""
    import warnings

    from qbench.report import Request, SkippedResult, build_report

    request = Request(results, tuple(runs), tuple(speed), device, tracked)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SkippedResult)
        artefacts = build_report(request, output)
    for warning in caught:
        warn(str(warning.message))
    for artefact in artefacts:
        done = f"[green]made[/green] {artefact.kind} {escape(artefact.name)}"
        console.print(done if not artefact.missing else f"[dim]not made[/dim] {artefact.kind} "
                      f"{escape(artefact.name)}: {escape(artefact.missing)}", highlight=False, soft_wrap=True)
    console.print(f"report: {output}/README.md", highlight=False, markup=False)


@app.command()
def speed(
    model: str = typer.Option("cobra,ml-mamba,q-mamba,llava", help="Comma-separated presets or aliases."),
    tokens: str = typer.Option("", help="Comma-separated visual token counts (default: each model's own)."),
    batch_size: str = typer.Option("1", help="Comma-separated batch sizes; 'max': the largest batch that fits "
                                   "(searched)."),
    images: str = typer.Option("1", help="Comma-separated images per prompt (each through the tower and projector)."),
    batch_limit: int = typer.Option(1 << 16, min=1, help="--batch-size max: the largest batch the search tries."),
    measure_tokens: int = typer.Option(1 << 19, min=1, help="--batch-size max: beyond this many prompt tokens in the "
                                       "batch, prefill one group and copy its state (decode measured only)."),
    engine: str = typer.Option("", help="Comma-separated engines: eager, graph, graph-nocompile, mamba_ssm-cg "
                                        "(default: the device's: eager and graph on a GPU, eager elsewhere)."),
    new_tokens: int = typer.Option(256, min=1, help="Tokens generated per sequence (EOS ignored)."),
    prompt_tokens: int = typer.Option(16, min=0, help="Text tokens in the prompt besides the visual ones."),
    device: str = typer.Option("auto", help="cuda, cpu, or auto (cuda when there is one)."),
    dtype: str = typer.Option(None, help="bf16, fp16 or fp32 (default: bf16 on a GPU, fp32 on the CPU)."),
    repeats: int = typer.Option(3, min=1, help="Timed repeats per point (medians reported)."),
    checkpoint: str = typer.Option(None, help="Time real weights: a checkpoint for the one --model."),
    output: str = typer.Option(None, help="Folder for speed.json and speed.csv (default results/speed/<gpu>_<date>)."),
    allow_slow: bool = typer.Option(False, "--allow-slow", help="Time full-size presets on a CPU anyway (refused "
                                    "otherwise, with an estimate of the time and memory they take)."),
) -> None:
    """Time vision tower, projector, prefill, first token and decode for each model x tokens x batch x engine."""
    from pathlib import Path

    from qbench.folder import Interrupted
    from qbench.inputs import resolve_device
    from qbench.speed import (
        LARGEST,
        SweepConfig,
        default_engines,
        log_try,
        run_sweep,
        summary_table,
        track,
    )

    device = str(resolve_device(device))
    dtype = dtype or device_dtype(device)
    config = SweepConfig(models=names(model, "--model", "cobra,llava"),
                         tokens=counts(tokens, "--tokens", "256,576") or [None],
                         batches=[b if b == LARGEST else counts(b, "--batch-size", "1,8,max")[0]
                                  for b in split(batch_size)],
                         engines=split(engine) or default_engines(device), new_tokens=new_tokens,
                         prompt_tokens=prompt_tokens, device=device, dtype=dtype, repeats=repeats,
                         checkpoint=checkpoint, images=tuple(counts(images, "--images", "1,4,16")),
                         batch_limit=batch_limit, measure_tokens=measure_tokens)
    config.validate()
    if config.device_type == "cpu" and not allow_slow:
        refuse_full_size_on_cpu(config)
    try:
        with track(config, console) as on_row:
            results = run_sweep(config, Path(output) if output else None, config.command(output), on_row,
                                log_try(console))
    except Interrupted as stop:
        interrupted(stop.kept)
    console.print(summary_table(results.rows))
    wrote(f"{results.out_dir / 'speed.json'} and speed.csv")


def device_dtype(device: str) -> str:
    """The name of the dtype a device runs by default, as `qbench run` chooses it (bf16 on a GPU, fp32 elsewhere)."""
    from qbench.inputs import dtype_name, resolve_dtype

    return dtype_name(resolve_dtype(None, device))


def refuse_full_size_on_cpu(config) -> None:
    """A full-size preset on a CPU takes hours: refused, with the least time and memory it would take."""
    from qbench.speed.estimate import duration, full_size_estimate

    found = full_size_estimate(config)
    if found is not None:
        fail(f"{', '.join(found.full_size)} on the CPU: this sweep would take at least {duration(found.seconds)} (its "
             f"multiply-adds at this machine's matrix rate; Python steps and scans add more) and "
             f"{found.memory_gib:.1f} GiB for the largest model's {config.dtype} weights. Time the tiny presets "
             "(--model tiny-cobra,tiny-llava), use a GPU, or give --allow-slow to run it anyway")


@app.command()
def workload(
    model: str = typer.Option("cobra,ml-mamba,q-mamba,llava", help="Comma-separated presets or aliases."),
    stream: str = typer.Option("vqa,vizwiz", help="Comma-separated request streams: vqa (the suite's shape), vizwiz "
                                                  "(one question per image)."),
    questions: int = typer.Option(3000, min=1, help="Requests per stream answered by the engine."),
    plain_questions: int = typer.Option(320, min=1, help="The stream's first requests answered by today's path."),
    plain_batch_size: int = typer.Option(32, min=1, help="Today's path: VLM.generate batch size."),
    batch_size: int = typer.Option(None, min=1, help="Engine: questions decoded together (default: the device's, "
                                                "qbench.engine.answering.device_settings)."),
    window: int = typer.Option(None, min=1, help="Engine: distinct images whose prefix states are held at once."),
    encode_batch_size: int = typer.Option(None, min=1, help="Engine: images per tower + prefill call."),
    workers: int = typer.Option(None, min=1, help="Engine: preprocessing threads."),
    device: str = typer.Option("auto", help="cuda, cpu, or auto (cuda when there is one)."),
    dtype: str = typer.Option(None, help="bf16, fp16 or fp32 (default: bf16 on a GPU, fp32 on the CPU)."),
    answer_tokens: int = typer.Option(None, min=1, help="Every answer this many tokens (as a random-weight run "
                                      "answers: it never says EOS); default 1-3 tokens, 2% of 16, as VQA answers."),
    output: str = typer.Option(None, help="Folder for workload.json/csv (default "
                                          "results/speed/<device>_<date>_answering)."),
) -> None:
    """Time the answering engine and today's path (VLM.generate) on a vqa-shaped request stream, random weights."""
    from pathlib import Path

    from qbench.folder import Interrupted
    from qbench.inputs import resolve_device, resolve_dtype
    from qbench.presets import get_preset
    from qbench.speed.workload import STREAMS, WorkloadConfig, run_workload

    streams, models = names(stream, "--stream", "vqa,vizwiz"), names(model, "--model", "cobra,llava")
    for name in streams:
        if name not in STREAMS:
            fail(f"unknown stream {name!r}; choose from: {', '.join(STREAMS.names())}")
    device = str(resolve_device(device))
    dtype = dtype or device_dtype(device)
    resolve_dtype(dtype)  # an unknown name fails here
    for name in models:
        get_preset(name)  # an unknown name fails here, before anything is built
    given = {"batch": batch_size, "window": window, "encode_batch": encode_batch_size, "workers": workers}
    config = WorkloadConfig(models, streams, questions, plain_questions, plain_batch_size,
                            {name: value for name, value in given.items() if value is not None}, device, dtype,
                            answer_tokens=answer_tokens)
    try:
        folder = run_workload(config, Path(output) if output else None, config.command(output),
                              lambda line: console.print(line, highlight=False, markup=False))
    except Interrupted as stop:
        interrupted(stop.kept)
    wrote(f"{folder / 'workload.json'} and workload.csv")


def split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def names(text: str, option: str, example: str) -> list[str]:
    """Comma-separated names, at least one; a UserError saying what to type otherwise."""
    found = split(text)
    if not found:
        raise UserError(f"{option} takes one or more names separated by commas, e.g. {option} {example}; got {text!r}")
    return found


def counts(text: str, option: str, example: str, least: int = 1) -> list[int]:
    """Comma-separated whole numbers (digits 0-9) of at least `least`; a UserError saying what to type otherwise."""
    parts = split(text)
    if not all(part.isascii() and part.isdigit() and int(part) >= least for part in parts):
        raise UserError(f"{option} takes whole numbers of {least} or more separated by commas, e.g. {option} "
                        f"{example}; got {text!r}")
    return [int(part) for part in parts]


@app.command()
def train(
    model: str = typer.Option(..., help="Preset to train (random weights unless --start), or a qbench checkpoint "
                                           "folder to train further from its weights."),
    start: str = typer.Option(None, help="Start from this model's parts that --model builds alike (vision tower, "
                                         "projector, LLM): a preset's published weights or a qbench checkpoint "
                                         "folder; the other parts start random."),
    start_checkpoint: str = typer.Option(None, help="Where --start's weights are, as `qbench run --checkpoint`."),
    output: str = typer.Option(..., help="Output folder: the trained checkpoint, train.json, and resume/ while "
                                         "running."),
    data: str = typer.Option("mini", help="'mini' (the mini-suites' train split) or a LLaVA conversation JSON."),
    image_dir: str = typer.Option(None, help="Image folder of a LLaVA conversation JSON."),
    train_questions: int = typer.Option(4000, min=1, help="Mini train questions per dataset."),
    steps: int = typer.Option(1000, min=1, help="Optimizer steps over all stages."),
    batch_size: int = typer.Option(32, min=1, help="Global batch (split over processes)."),
    lr: float = typer.Option(1e-3, help="Peak learning rate (warm-up, then cosine)."),
    recipe: str = typer.Option("llava", help="llava (align, then fine-tune) or cobra (one stage)."),
    seed: int = typer.Option(0, min=0, max=MAX_SEED, help="Seed of the initial weights and the batch order (the "
                             "data stays the same)."),
    save_every: int = typer.Option(200, min=1, help="Steps between resumable checkpoints."),
    stop_after: int = typer.Option(None, min=1, help="Stop after this many steps (checkpointed); run again to resume."),
    device: str = typer.Option(None, help="cpu or cuda (default: cuda when there is one)."),
    save_dtype: str = typer.Option(None, help="Store the result in this dtype (e.g. fp16, for shipping)."),
    sharding: str = typer.Option("ddp", help="Several processes: ddp (a replica each) or fsdp (weights, gradients "
                                             "and optimizer state sharded: the 3B/7B presets)."),
) -> None:
    """Train a VLM (vision tower frozen) on answer tokens in its own template; resumes an interrupted run.

    Several processes: `accelerate launch --num_processes N -m qbench.cli train ... [--sharding fsdp]`."""

    from accelerate import PartialState

    from qbench.checkpoints import check_ready, resolve_source
    from qbench.folder import FolderBusy
    from qbench.inputs import check_device, ensure_writable, resolve_dtype
    from qbench.train import Start, TrainConfig, llava_examples
    from qbench.train import train as run_training

    config = TrainConfig(steps=steps, batch_size=batch_size, lr=lr, recipe=recipe, seed=seed, save_every=save_every)
    stored = resolve_dtype(save_dtype) if save_dtype is not None else None
    if device is not None:
        check_device(device)
    source = resolve_source(model)
    check_ready(source)
    if start:
        begin = resolve_source(start, start_checkpoint)
        check_ready(begin)
    else:
        begin = source if source.own_folder else None
    ensure_writable(output, "--output")
    if data == "mini":
        from qbench.ablate import mini_examples

        examples = mini_examples(train_questions, seed)
    else:
        if not image_dir:
            fail("a LLaVA conversation JSON needs --image-dir")
        examples = llava_examples(data, image_dir)
    try:
        result = run_training(source.spec, examples, output, config, device=device, stop_after=stop_after,
                              start=Start(begin) if begin else None, sharding=sharding, save_dtype=stored)
    except FolderBusy as error:
        fail(str(error))
    except KeyboardInterrupt:
        from qbench.train.loop import kept

        what = kept(output)
        interrupted(what or f"no checkpoint in {output} yet", "resumes" if what else "starts it again")
    if PartialState().is_main_process:
        wrote(str(result))


@app.command()
def ablate(
    projectors: str = typer.Option(None, help="Comma-separated projectors (default: mlp, ldp, msc, qmamba)."),
    backbones: str = typer.Option(None, help="Comma-separated backbones (default: mamba, mamba2, llama)."),
    preset: str = typer.Option("tiny", help="Scale of the combinations (only 'tiny' today)."),
    name: str = typer.Option("tiny", help="Ablation name: results/ablation/<name>/, data/ablation/<name>/ (one "
                             "holding an ablation of another configuration is refused: give another name)."),
    steps: int = typer.Option(1000, min=1, help="Optimizer steps of each training, over all stages."),
    batch_size: int = typer.Option(32, min=1, help="Global batch of each training."),
    lr: float = typer.Option(1e-3, help="Peak learning rate (warm-up, then cosine)."),
    recipe: str = typer.Option("llava", help="llava (align, then fine-tune) or cobra (one stage)."),
    seeds: str = typer.Option("0", help="Comma-separated training seeds (e.g. 0,1,2): each combination is trained "
                              "and evaluated once per seed; the tables give mean ± spread and which differences "
                              "survive."),
    train_questions: int = typer.Option(4000, min=1, help="Mini train questions per dataset."),
    phases: str = typer.Option("train,speed,eval", help="Any of train, speed, eval (e.g. train,speed on a GPU)."),
    suite: str = typer.Option("mini", help="The suite each trained combination is evaluated on, as `qbench run "
                              "--suite` takes it."),
    limit: int = typer.Option(None, min=1, help="Evaluate at most this many questions per task."),
    device: str = typer.Option(None, help="cpu or cuda (default: a GPU, when there is one, trains and times; the "
                               "CPU evaluates)."),
    shard: str = typer.Option("0/1", help="i/n: train and evaluate only every n-th (combination, seed) from the i-th "
                              "(parallel workers)."),
    save_dtype: str = typer.Option(None, help="Store the trained checkpoints in this dtype (e.g. fp16, for shipping)."),
) -> None:
    """Train every projector x backbone combination on one budget; evaluate, time and tabulate each.

    Q-Mamba's query sweep too; a table per task with its chance level and speed."""
    from qbench import ablate as lab
    from qbench.inputs import check_device, resolve_dtype
    from qbench.train import TrainConfig

    if preset != "tiny":
        fail("only --preset tiny combinations are defined")
    index, _, count = shard.partition("/")
    if not (f"{index}{count}".isascii() and index.isdigit() and count.isdigit() and int(index) < int(count)):
        fail(f"--shard takes i/n with 0 <= i < n, e.g. --shard 0/4; got {shard!r}")
    if device is not None:
        check_device(device)
    stored = resolve_dtype(save_dtype) if save_dtype is not None else None
    chosen = counts(seeds, "--seeds", "0,1,2", least=0)
    if not chosen or max(chosen) > MAX_SEED:
        fail(f"--seeds takes whole numbers from 0 to {MAX_SEED} separated by commas, e.g. --seeds 0,1,2; got {seeds!r}")
    config = TrainConfig(steps=steps, batch_size=batch_size, lr=lr, recipe=recipe, seed=chosen[0],
                         save_every=max(1, steps // 4))
    study = lab.ablation(name, split(projectors) if projectors else lab.PROJECTORS,
                         split(backbones) if backbones else lab.BACKBONES, config, seeds=chosen)
    written = lab.run(study, split(phases), device, suite, limit, train_questions, (int(index), int(count)),
                      stored)
    for path in written:
        wrote(str(path))


@app.command()
def compare(run_a: str = typer.Argument(..., help="Run folder A (results/runs/...)."),
            run_b: str = typer.Argument(..., help="Run folder B, over the same samples."),
            disagreements: str = typer.Option("", help="CSV of the samples on which A and B differ "
                                                       "(default: disagreements_with_<B's folder name>.csv in folder "
                                                       "A: comparing A with another run writes another file)."),
            as_json: bool = typer.Option(False, "--json", help="Print the comparison as JSON (warnings go to "
                                                                "stderr).")) -> None:
    """Paired comparison of two runs: per task the difference A - B in percentage points, its 95% interval and
    p-value from one paired bootstrap (by image where questions share one), and the verdict they give."""
    from pathlib import Path

    from qbench.compare import compare_runs
    from qbench.runs import read_run

    disagreements = disagreements or Path(run_a) / f"disagreements_with_{Path(run_b).resolve().name}.csv"
    found = compare_runs(read_run(run_a), read_run(run_b), disagreements)
    if found["provenance_differs"]:
        warn(f"the runs differ in {', '.join(found['provenance_differs'])}", stderr=as_json)
    if as_json:
        print(json.dumps(found, indent=2, allow_nan=False))
        return
    for task, row in found["tasks"].items():
        lo, hi = row["ci"]
        console.print(f"{task} {row['metric']}: A - B = {row['difference']:+.1f} points [{lo:+.1f}, {hi:+.1f}], "
                      f"{row['p_text']} ({row['test']}, n={row['n']}): {row['verdict']}", highlight=False,
                      markup=False)
    console.print(f"disagreements: {disagreements}", highlight=False, markup=False)


def wrote(what: str) -> None:
    """`wrote PATH...`: paths printed as they are (a `[x]` in a name is not markup)."""
    console.print(f"[green]wrote[/green] {escape(what)}", highlight=False, soft_wrap=True)


def warn(message: str, stderr: bool = False) -> None:
    """One `warning: ...` line (on stderr where stdout carries data)."""
    (errors if stderr else console).print(f"[yellow]warning:[/yellow] {escape(message)}", highlight=False,
                                          soft_wrap=True)


@app.command()
def run(
    model: str = typer.Option(..., help="A preset or alias (see `qbench models`), or a qbench checkpoint folder."),
    suite: str = typer.Option(None, help="A suite in suites/ (vqa, vqav2, gqa, vizwiz, textvqa, pope, lite, mini) or "
                              "the path of a suite YAML of your own."),
    tasks: str = typer.Option(None, help="Instead of --suite: comma-separated tasks (or groups) that lmms-eval, "
                              "qbench's suites or an --include-path define, e.g. mini_vqav2,pope_adv."),
    include_path: list[str] = typer.Option([], help="A folder of task YAMLs of your own, in lmms-eval's format, "
                                           "as `lmms-eval --include_path` takes it (repeatable)."),
    limit: int = typer.Option(None, min=1, help="At most this many samples per task."),
    checkpoint: str = typer.Option(None, help="Weights: a path, FORMAT:HUB_ID_OR_PATH or random (default: the "
                                   "preset's own)."),
    data_dir: str = typer.Option("data", envvar="QBENCH_DATA_DIR", help="Local dataset copies in the hub layout, "
                                 "at DATA_DIR/<hub id>; the mini suite's are generated at DATA_DIR/mini on first "
                                 "use."),
    output: str = typer.Option("results/runs", help="Writes OUTPUT/<model>__<suite>__<time>/; an unfinished run "
                               "with the same settings there is resumed."),
    device: str = typer.Option(None, help="cuda, cuda:N or cpu (default: this process's GPU, else the CPU)."),
    dtype: str = typer.Option(None, help="bf16, fp16 or fp32 (default: bf16 on a GPU, fp32 on the CPU)."),
    batch_size: int = typer.Option(8, min=1, help="Samples answered together (answers do not depend on it)."),
    variant: list[str] = typer.Option([], help="Score as a paper did, not as lmms-eval does (repeatable): "
                                      "textvqa_ocr=before-question (Cobra) or =after-question (LLaVA-1.5), "
                                      "pope_parsing=lenient (LLaVA-1.5, Cobra), llava_prompt=vicuna_v1 "
                                      "(the LLaVA-1.5 paper's system prompt)."),
    seed: int = typer.Option(0, min=0, max=MAX_SEED, help="Seed of random weights (--checkpoint random, or a preset "
                             "without published weights); recorded with the run, which resumes only with the same."),
    engine: str = typer.Option("answering", help="answering (each image's prefix encoded and prefilled once for all "
                               "its questions) or plain (VLM.generate per batch); the answers are the same."),
) -> None:
    """Evaluate a model on a suite or on tasks through lmms-eval, into a new (or resumed) run folder."""
    from qbench.folder import FolderBusy
    from qbench.suites.runner import RunInterrupted
    from qbench.suites.runner import run as run_suite

    try:
        summary, folder = run_suite(model, suite, limit, checkpoint, data_dir, output, device, dtype, batch_size,
                                    variant, seed=seed, engine=engine, tasks=split(tasks or ""),
                                    include_paths=include_path, warn=warn)
    except FolderBusy as error:
        fail(f"{error}. Wait for it to finish, or give another --output to run the same again separately")
    except RunInterrupted as stop:
        interrupted(f"{stop.kept} answers kept in {stop.folder}")
    except KeyboardInterrupt:
        interrupted("before a run folder was chosen: nothing to keep", "runs it again")
    if summary is not None:  # rank 0
        print_run(summary, folder)


def interrupted(kept: str, then: str = "resumes") -> None:
    """After Ctrl-C: one line saying what was kept and the command that resumes it; exit 130 as a shell does."""
    import shlex
    import sys

    if process_rank()[0] == 0:  # one line for a torchrun job, not one per process
        command = shlex.join(["qbench", *sys.argv[1:]])
        console.print(f"[yellow]interrupted:[/yellow] {escape(kept)}; `{escape(command)}` {then}",
                      highlight=False, soft_wrap=True)
    raise typer.Exit(130)


METRIC_LABELS = {"pope_yes_ratio": "pope_yes_ratio(truth)",  # lmms-eval's: the share of yes in the ground truth
                 "pope_answer_yes_ratio": "yes_ratio(answers)"}  # qbench's: the model's own share of yes answers


def print_run(summary: dict, folder) -> None:
    """The run's scores in percent with their 95% intervals, and a line saying when the weights were random."""
    table = Table(title=escape(f"{summary['model']} on {summary['suite']} (lmms-eval scoring, %, 95% intervals)"),
                  caption=weights_line(summary.get("checkpoint") or {}))
    for column in ("task", "samples", "metrics"):
        table.add_column(column, justify="right" if column == "samples" else "left")
    for task, metrics in summary["metrics"].items():
        intervals = (summary.get("intervals") or {}).get(task) or {}
        table.add_row(escape(task), str(summary["n_samples"][task]), "  ".join(
            f"{METRIC_LABELS.get(name, name)} {100 * value:.1f}{interval_text(intervals.get(name))}"
            for name, value in metrics.items()))
    console.print(table)
    variants = ", ".join(f"{k}={v}" for k, v in summary["variants"].items()) or "none (lmms-eval's own scoring)"
    rate = f"{summary['samples_per_s']:.2f} samples/s" if summary["samples_per_s"] else "all answers resumed"
    console.print(f"variants: {variants}; errors: {summary['errors']}; {rate} on {summary['device']}", highlight=False,
                  markup=False)
    wrote(f"{folder}/summary.json and samples.jsonl")


def weights_line(checkpoint: dict) -> str | None:
    """The run table's line for random weights, whose scores are chance."""
    if checkpoint.get("source") != "random":
        return None
    return f"[yellow]random weights, seed {checkpoint.get('seed')}: scores are chance[/yellow]"


def interval_text(found: dict | None) -> str:
    """' [lo, hi]' in percent, or nothing without an interval."""
    ci = (found or {}).get("ci")
    return f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]" if ci else ""


data_app = typer.Typer(cls=Commands, help="Datasets: the offline mini-suites.", no_args_is_help=True)
app.add_typer(data_app, name="data")


@data_app.command("mini")
def data_mini(
    output: str = typer.Option("data", help="Writes OUTPUT/mini/{VQAv2,GQA,VizWiz-VQA,textvqa,POPE} in the hub "
                               "layout, which `qbench run --data-dir OUTPUT --suite mini` reads."),
    seed: int = typer.Option(0, min=0, max=MAX_SEED, help="The same seed always writes the same datasets."),
    eval_questions: int = typer.Option(None, "--eval", help="Questions per eval split (default 300)."),
    train_questions: int = typer.Option(None, "--train", help="Questions per train split (default 4000)."),
) -> None:
    """Generate the mini-suites: scenes of coloured shapes and signs in the schemas of the five hub datasets."""
    from qbench.suites import mini

    try:
        folder = mini.write(output, seed, mini.EVAL_QUESTIONS if eval_questions is None else eval_questions,
                            mini.TRAIN_QUESTIONS if train_questions is None else train_questions)
    except ValueError as error:
        fail(str(error))
    wrote(f"{folder}: {', '.join(mini.DATASETS)}")


def human(count: int) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if count >= size:
            return f"{count / size:.3g}{unit}"
    return str(count)


if __name__ == "__main__":
    app()
