"""``python -m a1.fit --config configs/X.yaml [--config OVERLAY.yaml …] [--key.sub=value …] [--ckpt_path last|PATH]``

Trains InternVLA-A1 with LightningCLI (``parser_mode: omegaconf+``): ``${...}`` interpolation,
dotted overrides, later ``--config`` files layered over earlier ones, unknown or abbreviated keys
are errors, ``--print_config`` prints the resolved config and ``--help`` documents every option.

Before anything heavy is built the run is checked (:mod:`a1.train.preflight`: hardware, cluster,
numbers; the run folder; every dataset opened against the model's views), so a config that
cannot run fails in seconds with one line naming the key and the fix. ``data.options`` fields that
must equal the model's are linked from ``model.policy`` (set them there). Everything a run writes
goes to ``trainer.default_root_dir`` (:mod:`a1.train.run_folder`).
"""

from __future__ import annotations

import dataclasses
import json
import sys
import typing
import warnings

from jsonargparse import ArgumentParser, Namespace, set_parsing_settings
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.utilities import rank_zero_only

from a1.data.datamodule import A1DataModule
from a1.data.pools import BadDatasetError
from a1.model.config import UnderstandingConfig
from a1.train.module import A1Module, NonFiniteLossError
from a1.train.preflight import preflight
from a1.train.progress import progress_bar
from a1.train.report import RunReport
from a1.train.run_folder import A1Checkpoint, KeepMetrics, check_fresh_or_resume, run_loggers

#: data.options fields that are the model's (linked, never set twice).
LINKS = {
    "model.policy.views": "data.options.views",
    "model.policy.action.chunk_size": "data.options.chunk_size",
    "model.policy.action.max_dim": "data.options.max_dim",
    "model.policy.understanding.max_text_tokens": "data.options.max_text_tokens",
    "model.policy.understanding.pretrained": "data.options.tokenizer",
}

#: Warnings known to be harmless here (the frozen Cosmos tokenizer is in eval mode on purpose; the
#: endless training stream has no length; a1 logs its own learning rate and batch sizes).
QUIET = (
    r".*module\(s\) in eval mode.*",
    r".*Total length of .* across ranks is zero.*",
    r".*does not have many workers.*",
    r".*LightningCLI's args parameter is intended to run from within Python.*",
    r".*is an invalid version and will not be supported.*",
    r".*isinstance\(treespec, LeafSpec\). is deprecated.*",
    r".*skip_none parameter was deprecated.*",
)


#: Config fields typed ``dict`` (transformers config keywords). jsonargparse substitutes a later
#: ``--config``'s dict for an earlier one's; a1 layers them key by key like every other section (and
#: like `a1.config.load_yaml`), so an overlay may change one key of ``vision`` without dropping the rest.
DICT_FIELDS = tuple(f"model.policy.understanding.{f.name}" for f in dataclasses.fields(UnderstandingConfig)
                    if typing.get_origin(typing.get_type_hints(UnderstandingConfig)[f.name]) is dict)


def layer_dict_fields(args: list[str]) -> list[str]:
    """``args`` with, after each ``--config`` (or ``-c``) that sets a `DICT_FIELDS` field an earlier one set too,
    an override giving that field its key-by-key merge over the earlier files (a file that cannot be
    read is left to the parser, which names it)."""
    from omegaconf import DictConfig, OmegaConf

    out, layered = [], {}
    for i, arg in enumerate(args):
        out.append(arg)
        if arg.startswith(("--config=", "-c=")):
            path = arg.split("=", 1)[1]
        elif i > 0 and args[i - 1] in ("--config", "-c"):
            path = arg
        else:
            continue
        try:
            cfg = OmegaConf.load(path)
        except Exception:  # noqa: BLE001 — missing or bad YAML: the parser reports it with the file name
            continue
        for key in DICT_FIELDS:
            node = OmegaConf.select(cfg, key) if isinstance(cfg, DictConfig) else None
            if not isinstance(node, DictConfig):
                continue
            if key in layered:
                layered[key] = OmegaConf.merge(layered[key], node)
                out.append(f"--{key}={json.dumps(OmegaConf.to_container(layered[key]))}")
            else:
                layered[key] = node
    return out


class A1CLI(LightningCLI):
    """LightningCLI for a1: linked data options, a forced ``checkpoint`` group, checks before building."""

    def add_arguments_to_parser(self, parser) -> None:
        parser.add_argument("--ckpt_path", type=str | None, default=None,
                            help="resume: 'last' (the run folder's last.ckpt) or a checkpoint path")
        parser.add_lightning_class_args(A1Checkpoint, "checkpoint")
        for source, target in LINKS.items():
            parser.link_arguments(source, target, apply_on="parse")

    def instantiate_classes(self) -> None:
        config = self.config
        preflight(config)
        self.ckpt_path = check_fresh_or_resume(self.run_folder, config.get("ckpt_path"))
        self.datamodule = data_module(config.data)
        if rank_zero_only.rank == 0:
            self.datamodule.prepare_data()
        self.datamodule.inspect()  # every dataset opened and checked before the model is built
        self.config_init = self.parser.instantiate(config)
        self.config_init["data"] = self.datamodule
        self.model = self.config_init["model"]
        self.trainer = self.instantiate_trainer()

    @property
    def run_folder(self) -> str:
        import os

        return self.config.trainer.get("default_root_dir") or os.getcwd()

    def instantiate_trainer(self, **kwargs):
        trainer_config = {**self._get(self.config_init, "trainer", default={}), **kwargs}
        if trainer_config.get("logger") in (None, True):
            trainer_config["logger"] = run_loggers(self.run_folder)
        extra = [self._get(self.config_init, c) for c in self._parser(self.subcommand).callback_keys]
        if trainer_config.get("enable_checkpointing") is False:  # the `checkpoint` section is switched off
            extra = [cb for cb in extra if not isinstance(cb, A1Checkpoint)]
        extra += [RunReport(), KeepMetrics()]
        if trainer_config.get("enable_progress_bar", True) is not False:
            extra.append(progress_bar(every_n_steps=trainer_config.get("log_every_n_steps") or 50))
        return self._instantiate_trainer(trainer_config, extra)


def data_module(data: Namespace) -> A1DataModule:
    """The ``data`` section of a parsed config as an :class:`A1DataModule` (the one reader of it)."""
    parser = ArgumentParser()
    parser.add_class_arguments(A1DataModule, "data")
    return parser.instantiate(Namespace(data=data.clone()))["data"]


def _cli(args: list[str] | None, cls: type[A1CLI] = A1CLI) -> A1CLI:
    for pattern in QUIET:
        warnings.filterwarnings("ignore", message=pattern)
    set_parsing_settings(docstring_parse_attribute_docstrings=True)  # dataclass field docs → --help
    return cls(
        A1Module,
        A1DataModule,
        run=False,
        seed_everything_default=0,
        auto_configure_optimizers=False,  # the optimizer and schedule live in model.optim
        parser_kwargs={"parser_mode": "omegaconf+", "allow_abbrev": False},
        save_config_kwargs={"overwrite": True},
        args=layer_dict_fields(sys.argv[1:] if args is None else args),
    )


class _ParseOnly(A1CLI):
    def instantiate_classes(self) -> None:
        pass


def parse_config(args: list[str]) -> Namespace:
    """The resolved config of ``python -m a1.fit ARGS`` (same parser, links and checks of keys),
    without building anything — what other commands (plan, summary, convert) read configs with."""
    return _cli(args, _ParseOnly).config


def main(argv: list[str] | None = None) -> A1CLI:
    try:
        cli = _cli(argv)
    except ValueError as err:  # PreflightError, RunFolderError, DatasetError, ViewError, ...
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    try:
        cli.trainer.fit(cli.model, datamodule=cli.datamodule, ckpt_path=cli.ckpt_path)
    except (BadDatasetError, NonFiniteLossError) as err:  # the data or the run, not the code: one line
        text = str(err).strip()  # from a DataLoader worker: its traceback, ending with the original error
        line = text.splitlines()[-1] if "Original Traceback" in text else f"{type(err).__name__}: {text}"
        print(f"error: {line}", file=sys.stderr)
        raise SystemExit(1) from None
    return cli


if __name__ == "__main__":
    main()
