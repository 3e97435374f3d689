"""What every command shares: Hydra's entry point on the packaged configs, quiet libraries, and one way to fail.

Any bad input, found while Hydra composes the config (a mistyped key, a wrong type, an unknown option) or
later (an out-of-range value, a missing file, a missing extra), ends the command with one ``error: ...`` line
on stderr and the exit status its error carries (see ``mnist_cnn.errors``), never a traceback.
"""

from __future__ import annotations

import atexit
import functools
import gc
import logging
import os
import re
import sys
import warnings
from collections.abc import Callable
from typing import Any, NoReturn

import hydra
from hydra.errors import ConfigCompositionException, HydraException, MissingConfigException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

from mnist_cnn.config import FORMER_KEYS, FORMER_SWITCHES, did_you_mean, did_you_mean_inside
from mnist_cnn.errors import EXIT_BAD_INPUT, EXIT_SOME_FAILED, UserError
from mnist_cnn.resources import CONF_DIR

Task = Callable[[DictConfig], Any]
# Options of Hydra's own groups that the sweep extra's plugins add.
EXTRA_OPTIONS = {"hydra/sweeper": ("optuna",), "hydra/launcher": ("joblib", "submitit_local", "submitit_slurm")}
# Hydra's message for ``group=option`` when this command's config has no such group; it advises ``+group=...``. Read
# from the text: the exception carries no field that names the group.
NOT_IN_DEFAULTS = re.compile(r"Could not override '([^']+)'\. No match in the defaults list.*use \+(\S+)", re.DOTALL)
NOT_GROUP_HINTS = {"model": "the model is the one ckpt_path names, whose checkpoint holds its architecture"}
QUIET_LOGGERS = (
    "lightning.pytorch.utilities.rank_zero",  # "GPU available: ...", the LitLogger tip, "Trainer(...) was configured"
    "lightning.pytorch.trainer.connectors.signal_connector",  # "Received SIGTERM": the command says so itself
)
QUIET_WARNINGS = (
    r".*LeafSpec.*",  # Lightning 2.6 on torch 2.10+: a deprecation inside Lightning, not in this package
    r".*does not have many workers.*",  # batches are indexed from tensors in memory: workers would only cost
    r".*smaller than the logging interval.*",  # metrics are logged once per epoch, whatever log_every_n_steps says
)


def fail(message: str, exit_code: int = EXIT_BAD_INPUT) -> NoReturn:
    """End the command with one ``error:`` line."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(exit_code)


def quiet_libraries() -> None:
    """Silence libraries' tips, start-up banners and deprecation notes that a user cannot act on."""
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    for message in QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=message)


def explain(error: Exception) -> str:
    """One line saying what Hydra could not compose and how to fix it."""
    cause = error.__cause__
    if isinstance(error, MissingConfigException):
        group, _, option = (error.missing_cfg_file or "").rpartition("/")
        if option in EXTRA_OPTIONS.get(group, ()):
            return f'{group}={option} needs the sweep extra: pip install "mnist_cnn[sweep]"'
        if error.options is not None:
            choices = f"choose one of {', '.join(sorted(error.options))}"
            return f"{group}={option} is not an option: {did_you_mean(option, error.options)} {choices}".replace(
                ":  ", ": "
            )
    if isinstance(cause, OmegaConfBaseException) and cause.full_key:
        key = cause.full_key
        parent = cause.parent_node
        if key in FORMER_KEYS:
            return f"{key} is now {FORMER_KEYS[key]}: give {FORMER_KEYS[key]}=... instead"
        if isinstance(cause.value, bool) and (key, cause.value) in FORMER_SWITCHES:
            return f"{key}={str(cause.value).lower()} is now {FORMER_SWITCHES[key, cause.value]}"
        if isinstance(cause, (ConfigAttributeError, ConfigKeyError)) and isinstance(parent, DictConfig):
            prefix, _, name = key.rpartition(".")
            prefix = f"{prefix}." if prefix else ""
            settings = sorted(str(item) for item in parent if not str(item).startswith("_"))
            listed = ", ".join(settings) if len(settings) <= 12 else "python -m <command> --cfg job shows them all"
            groups = OmegaConf.to_container(parent, resolve=False)
            groups.pop("hydra", None)  # Hydra's own settings: hydra.<key> overrides name them
            suggestion = did_you_mean(name, settings, prefix) or did_you_mean_inside(name, groups, prefix)
            where = prefix.rstrip(".") or "this command"
            return f"{key} is not a setting: {suggestion or f'the settings of {where}: {listed}'}"
        return f"{key}: {str(cause).splitlines()[0]}"
    not_a_group = NOT_IN_DEFAULTS.search(str(error))
    if not_a_group:
        group, override = not_a_group.groups()
        return f"{override} is not a setting of this command: {NOT_GROUP_HINTS.get(group, '--help lists its settings')}"
    lines = [line for line in str(error).splitlines() if line.strip()]
    return " ".join(lines[:2]) if lines else type(error).__name__


# At exit, Python's last garbage collections walk every object the imports made (torch's: about 0.4 s on a 2-core
# CPU); frozen first, they are skipped. Objects left in reference cycles then go unfinalised, which nothing here
# relies on: files are closed by their ``with`` blocks.
atexit.register(gc.freeze)


def hydra_command(config_name: str) -> Callable[[Task], Callable[[], Any]]:
    """Decorate a task into a command's ``main()`` that composes ``conf/<config_name>.yaml`` with Hydra."""

    def decorate(task: Task) -> Callable[[], Any]:
        @functools.wraps(task)
        def in_hydra(cfg: DictConfig) -> Any:
            quiet_libraries()
            try:
                return task(cfg)
            except UserError as error:
                fail(str(error), error.exit_code)

        def main() -> Any:
            os.environ.setdefault("HYDRA_FULL_ERROR", "1")  # composition errors reach this function unprinted
            try:
                return hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name=config_name)(in_hydra)()
            except (ConfigCompositionException, MissingConfigException) as error:
                fail(explain(error))
            except (HydraException, OmegaConfBaseException) as error:  # e.g. an override Hydra cannot parse
                fail(explain(error))
            except ValueError as error:  # Optuna's sweeper, when every trial failed
                if "No trials are completed" not in str(error):
                    raise
                fail(
                    "every trial of the search failed: each one's error is in its record, "
                    "<checkpoint_root>/multirun/<timestamp>/jobs/<trial>.json",
                    EXIT_SOME_FAILED,
                )

        return main

    return decorate
