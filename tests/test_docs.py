"""Every command the documentation shows still works with today's configs and parsers.

Each ``python -m mnist_cnn.<command> ...`` (or ``mnist-<command> ...``, or ``python -m benchmarks ...``) in README.md
and docs/*.md, in a shell code block or in inline code, is checked in this process: a Hydra command's overrides are composed with
``compose_config`` and validated as the command would (for ``train``: the model options and every component's
arguments too); an argparse command's arguments are parsed by its own parser. A sweep (``a=1,2``, ``choice(...)``,
``interval(...)``) is checked with its first value; a ``<placeholder>`` stands for any string.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import re
import shlex
from pathlib import Path
from unittest import mock

import pytest
import torch
from conftest import REPO
from hydra._internal.utils import get_args_parser
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import ConfigCompositionException, MissingConfigException
from omegaconf import DictConfig

from mnist_cnn import list_models
from mnist_cnn.config import SCHEMAS, compose_config, validate
from mnist_cnn.errors import ConfigError
from mnist_cnn.resources import CONF_DIR

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
COMMAND = re.compile(
    r"python -m (mnist_cnn\.\w+|benchmarks\b)|\bmnist-\w+ +\S"
)  # a console script's bare name is prose
SHELL_FENCES = ("", "bash", "sh", "shell", "console")
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.DOTALL | re.MULTILINE)
INLINE = re.compile(r"`([^`\n]+)`")
PLACEHOLDER = re.compile(r"<[^<>\s]*>")
SHELL_OPERATORS = {"|", "||", "&&", ";", ">", ">>", "&"}
SWEEP_OPTION = re.compile(r"\b(hparams_search|hydra/sweeper|hydra/launcher)=")  # the sweep extra's plugins


def installed(module: str) -> bool:
    """Whether ``module`` can be imported here."""
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # its parent package is missing
        return False


SWEEP_EXTRA_INSTALLED = all(
    installed(f"hydra_plugins.hydra_{plugin}") for plugin in ("optuna_sweeper", "joblib_launcher", "submitit_launcher")
)
SWEEP_EXTRA_REASON = 'needs the sweep extra: pip install -e ".[sweep]"'
NEEDS_SWEEP_EXTRA = pytest.mark.skipif(not SWEEP_EXTRA_INSTALLED, reason=SWEEP_EXTRA_REASON)


def documented_commands(path: Path, root: Path = REPO) -> list[tuple[str, str]]:
    """``(file:line, command line)`` for every command shown in ``path``; a shell line continued with a
    backslash counts as one line, numbered where it starts."""
    text = path.read_text()
    found = []

    def add(offset: int, snippet: str) -> None:
        if COMMAND.search(snippet):
            found.append((f"{path.relative_to(root)}:{text.count(chr(10), 0, offset) + 1}", snippet.strip()))

    for fence in FENCE.finditer(text):
        if fence.group(1) not in SHELL_FENCES:
            continue
        offset, start, pending = fence.start(2), fence.start(2), ""
        for line in fence.group(2).split("\n"):
            pending += line.removesuffix("\\") + " "
            if not line.endswith("\\"):
                add(start, pending.removeprefix("$ "))
                pending, start = "", offset + len(line) + 1
            offset += len(line) + 1
    prose = FENCE.sub(lambda fence: "\n" * fence.group(0).count("\n"), text)  # same line numbers, no fences
    for code in INLINE.finditer(prose):
        add(code.start(), code.group(1))
    return found


def command_and_arguments(line: str) -> tuple[str, list[str]]:
    """``("train", [arguments])`` of the first command on a shell ``line`` (``"benchmarks"`` for the checkout's
    benchmarks), placeholders filled in."""
    tokens = shlex.split(PLACEHOLDER.sub("x", line), comments=True)
    for index, token in enumerate(tokens):
        module = tokens[index + 1] if token == "-m" and index + 1 < len(tokens) else ""
        if module.startswith("mnist_cnn.") or module == "benchmarks":
            name, rest = module.removeprefix("mnist_cnn."), tokens[index + 2 :]
            break
        if token.startswith("mnist-"):
            name, rest = token.removeprefix("mnist-"), tokens[index + 1 :]
            break
    else:
        raise AssertionError(f"no mnist_cnn command in {line!r}")
    end = next((i for i, token in enumerate(rest) if token in SHELL_OPERATORS), len(rest))
    return name, rest[:end]


def first_choice(override: str) -> str:
    """``override`` with a sweep replaced by its first value (an interval by its lower end)."""
    parsed = OverridesParser.create().parse_override(override)
    if not parsed.is_sweep_override():
        return override
    if parsed.is_interval_sweep():
        value = str(parsed.value().start)
    else:
        value = next(iter(parsed.sweep_string_iterator()))
    return f"{parsed.get_key_element()}={value}"


def check_train(cfg: DictConfig) -> None:
    """What ``train`` checks before it reads any data: the model's options and every component's arguments."""
    from mnist_cnn.training.components import check_arguments
    from mnist_cnn.training.module import LIGHTNING_SCHEDULER_KEYS
    from mnist_cnn.training.run import build_module, check_components

    config = validate(cfg)
    with mock.patch.object(torch.cuda, "is_available", return_value=True):  # trainer=gpu, shown on a CPU machine
        check_components(config)
    build_module(config)  # builds the architecture with its options; refuses optimizer/scheduler targets
    if config.scheduler:
        arguments = {key: value for key, value in config.scheduler.items() if key not in LIGHTNING_SCHEDULER_KEYS}
        check_arguments(arguments, "scheduler", ("optimizer",))


@functools.cache  # a command shown on several pages is composed once
def check_hydra_command(name: str, arguments: tuple[str, ...]) -> None:
    args = get_args_parser().parse_args(arguments)
    cfg = compose_config(*map(first_choice, args.overrides), config=name)
    if args.help or args.hydra_help or args.cfg or args.info:  # only shows things: composing is what it does
        return
    if name == "train":
        check_train(cfg)
    elif name in SCHEMAS:
        validate(cfg)


def module_name(name: str) -> str:
    """The module ``python -m`` runs for the command ``name``."""
    return name if name == "benchmarks" else f"mnist_cnn.{name}"


def check_argparse_command(name: str, arguments: list[str]) -> None:
    module = importlib.import_module("benchmarks.__main__" if name == "benchmarks" else f"mnist_cnn.{name}")
    assert hasattr(module, "build_parser"), f"{module_name(name)} has neither conf/{name}.yaml nor build_parser()"
    try:
        args = module.build_parser().parse_args(arguments)
    except SystemExit as exit:
        assert exit.code == 0, f"python -m {module_name(name)} refuses {shlex.join(arguments)} (see stderr)"
        return  # --help
    if name == "benchmarks":
        unknown = set(args.models.split(",")) - set(list_models())
        assert not unknown, f"--models names no registered model: {', '.join(sorted(unknown))}"
        from benchmarks.epoch import PIPELINES

        assert set(args.pipelines) <= set(PIPELINES), f"--pipelines {args.pipelines}: only {''.join(PIPELINES)} exist"


def check(line: str) -> None:
    """Fail unless the command ``line`` shows would be accepted by its command today."""
    name, arguments = command_and_arguments(line)
    assert importlib.util.find_spec(module_name(name)) is not None, f"there is no command {module_name(name)}"
    if (CONF_DIR / f"{name}.yaml").is_file():
        check_hydra_command(name, tuple(arguments))
    else:
        check_argparse_command(name, arguments)


COMMANDS = [command for path in DOCS for command in documented_commands(path)]


@pytest.mark.parametrize("line", [line for _, line in COMMANDS], ids=[where for where, _ in COMMANDS])
def test_documented_command_is_accepted(line: str) -> None:
    if SWEEP_OPTION.search(line) and not SWEEP_EXTRA_INSTALLED:
        pytest.skip(SWEEP_EXTRA_REASON)
    check(line)


def test_the_readme_shows_every_command() -> None:
    shown = {command_and_arguments(line)[0] for where, line in COMMANDS if where.startswith("README.md")}
    assert {"train", "evaluate", "predict", "export", "pretrained", "benchmarks"} <= shown
    assert len(COMMANDS) >= 50  # the docs pages are read too


@pytest.mark.parametrize(
    ("line", "error", "message"),
    [
        # a key that does not exist; an option this model lacks; a Trainer argument misspelled
        ("python -m mnist_cnn.train optimizer.lrr=0.1", ConfigCompositionException,
         "Could not override 'optimizer.lrr'"),
        ("python -m mnist_cnn.train model=lenet5 model.dropout_rate=0.3", ConfigCompositionException,
         "Could not override 'model.dropout_rate'"),
        ("python -m mnist_cnn.train trainer.gradient_clip=0.5", ConfigCompositionException,
         "Could not override 'trainer.gradient_clip'"),
        ("python -m mnist_cnn.train trainer=tpu", MissingConfigException,
         "In 'train': Could not find 'trainer/tpu'"),  # a group option that does not exist
        ("python -m mnist_cnn.train model=resnet model.base_width=0", ConfigError,
         "invalid options for model resnet: blocks_per_group and base_width must be >= 1, got 2, 0"),
        (("python -m mnist_cnn.train +callbacks.swa._target_=lightning.pytorch.callbacks.StochasticWeightAveraging "
          "+callbacks.swa.swa_lr=0.01"), ConfigError,
         ("callbacks.swa.swa_lr is not an argument of lightning.pytorch.callbacks.StochasticWeightAveraging: did you "
          "mean swa_lrs?")),
        ("python -m mnist_cnn.train +scheduler.gama=0.5", ConfigError,
         "scheduler.gama is not an argument of torch.optim.lr_scheduler.StepLR: did you mean gamma?"),
        ("python -m mnist_cnn.train data.val_size=0", ConfigError,  # the checkpoint would have nothing to watch
         "data.val_size=0 leaves nothing to validate on"),
        ("python -m mnist_cnn.train -m optimizer.lr=-1,0.01", ConfigError,  # a sweep is checked with its first value
         "optimizer.lr=-1 is not allowed: use a number > 0"),
        pytest.param("mnist-train hparams_search=optuna hydra.sweeper.n_trial=5", ConfigCompositionException,
                     "Could not override 'hydra.sweeper.n_trial'", marks=NEEDS_SWEEP_EXTRA),  # Hydra's own settings
        ("python -m mnist_cnn.evaluate data.batch_size=64", ConfigError,  # a required value left out
         "ckpt_path is required: give a shipped model name"),
        ("python -m mnist_cnn.predict inputs=a.png top_k=11", ConfigError,
         "top_k=11 is not allowed: use a whole number in [1, 10]"),
        ("python -m benchmarks --modelz lenet5", AssertionError, "python -m benchmarks refuses --modelz lenet5"),
        ("python -m benchmarks --models lenet6", AssertionError, "--models names no registered model: lenet6"),
        ("python -m mnist_cnn.pretrained publish <run> --checkpoint final", AssertionError,
         "python -m mnist_cnn.pretrained refuses publish x --checkpoint final"),
        ("python -m mnist_cnn.nothing", AssertionError, "there is no command mnist_cnn.nothing"),
    ],
)  # fmt: skip
def test_a_command_that_no_longer_works_fails_the_check(line: str, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=re.escape(message)):
        check(line)


def test_commands_are_found_in_code_blocks_and_inline_code(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "Run `python -m mnist_cnn.evaluate ckpt_path=lenet5` or:\n\n```bash\npip install mnist_cnn\n"
        "MNIST_DATA_DIR=/data python -m mnist_cnn.train -m model=lenet5,resnet \\\n"
        "    trainer.max_epochs=2  # a sweep\n"
        "```\n\n```python\nprint('python -m mnist_cnn.train')\n```\n"
    )
    (block, inline) = documented_commands(page, root=tmp_path)
    assert inline == ("page.md:1", "python -m mnist_cnn.evaluate ckpt_path=lenet5")
    assert block[0] == "page.md:5"
    assert command_and_arguments(block[1]) == ("train", ["-m", "model=lenet5,resnet", "trainer.max_epochs=2"])
