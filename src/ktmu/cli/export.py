"""``ktmu export --model SPEC --out DIR``: an unlearned model as a folder transformers / open_clip / ktmu load, with a model card."""
from __future__ import annotations

import argparse
from typing import Any

from ktmu.cli import options
from ktmu.cli.console import say


HELP = ("write a model (e.g. an unlearned checkpoint) in the format its ecosystem loads, with a model card: hf: models as a "
        "save_pretrained folder, open_clip: models as an open_clip checkpoint and config, mini-clip / tiny-clip as a ktmu checkpoint")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Declare ``ktmu export`` and its options."""
    from ktmu.backbones.export import FORMATS

    sp = options.command(subparsers, "export", HELP)
    sp.add_argument("--model", required=True, help="the model to export, e.g. mini-clip:runs/nhl/model.safetensors or hf:DIR:CKPT.safetensors")
    sp.add_argument("--out", required=True, help="the folder to write (new or empty)")
    sp.add_argument("--format", choices=("auto", *FORMATS), default="auto",
                    help="auto (the model's own: hf for hf:, open_clip for open_clip:, ktmu for mini-clip/tiny-clip), hf, open_clip or ktmu")
    sp.add_argument("--results", help="the unlearn run's results.json for the model card (default: the one beside the checkpoint)")
    sp.add_argument("--overwrite", action="store_true", help="replace an earlier ktmu export in --out")
    return sp


def run(args: argparse.Namespace) -> int:
    """Export; one ``ktmu: error:`` line for a format that does not apply or an --out that cannot be used."""
    from ktmu.workflows.export import export_model
    from ktmu.workflows.provenance import command_line

    done = export_model(args.model, args.out, args.format, results=args.results, overwrite=args.overwrite, command=command_line())
    if not args.quiet:  # --quiet: only errors
        files = ", ".join(done.record["files"])
        source = done.record.get("card_from")
        card = f"with a model card from {source}" if source else "with a bare model card (no results.json describes the model)"
        say(f"wrote {done.folder} ({done.format}: {files}) {card} in {done.seconds:.1f} s")
    return 0
