"""``python -m a1.fit --config configs/X.yaml [--key.sub=value …] [--ckpt_path PATH|last]``

Trains InternVLA-A1 with LightningCLI. Configs are parsed with ``parser_mode: omegaconf+``:
``${...}`` interpolation inside the YAML and dotted command-line overrides both work, unknown
keys are errors naming the key, and ``--print_config`` prints the resolved config. Every option
is a typed init argument whose docstring is its ``--help`` text.
"""

from __future__ import annotations


from jsonargparse import set_parsing_settings
from lightning.pytorch.cli import LightningCLI

from a1.data.datamodule import A1DataModule
from a1.train.module import A1Module


class A1CLI(LightningCLI):
    """LightningCLI with a ``--ckpt_path`` for resuming (a path, or ``last``)."""

    def add_arguments_to_parser(self, parser) -> None:
        parser.add_argument("--ckpt_path", type=str | None, default=None,
                            help="checkpoint to resume from: a path, or 'last' for the newest in the run folder")


def main(argv: list[str] | None = None) -> A1CLI:
    set_parsing_settings(docstring_parse_attribute_docstrings=True)  # dataclass field docs → --help
    cli = A1CLI(
        A1Module,
        A1DataModule,
        run=False,
        seed_everything_default=0,
        parser_kwargs={"parser_mode": "omegaconf+"},
        save_config_kwargs={"overwrite": True},
        args=argv,
    )
    cli.trainer.fit(cli.model, datamodule=cli.datamodule, ckpt_path=cli.config.get("ckpt_path"))
    return cli


if __name__ == "__main__":
    main()
