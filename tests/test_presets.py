"""One preset name means one thing in every stage that offers it.

A newcomer chains `fastattr world make --preset P`, `fastattr t2i train --preset P` and
`fastattr build --preset P`; for every P that more than one command offers, that chain must work.
The tiny chain runs end to end; the bigger ones are checked for agreeing sizes without training.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

pytest.importorskip("torch")

from fastattr.cli import build_parser, main  # noqa: E402

CHAIN = ("world make", "t2i train", "build")


def _preset_choices() -> dict[str, set[str]]:
    """Every command with a --preset, and the names its parser accepts."""
    found: dict[str, set[str]] = {}

    def walk(parser: argparse.ArgumentParser, path: tuple[str, ...]) -> None:
        for action in parser._actions:
            if "--preset" in action.option_strings:
                found[" ".join(path)] = set(action.choices)
            if isinstance(action, argparse._SubParsersAction):
                for name, child in action.choices.items():
                    walk(child, path + (name,))

    walk(build_parser(), ())
    return found


CHOICES = _preset_choices()
SHARED = sorted({p for names in CHOICES.values() for p in names
                 if sum(p in other for other in CHOICES.values()) > 1})


def test_the_commands_offer_what_their_tables_hold() -> None:
    from fastattr.build import BUILD_PRESETS
    from fastattr.demo import PRESETS as DEMO
    from fastattr.t2i.config import PRESETS as T2I
    from fastattr.world import PRESETS as WORLD

    assert CHOICES == {"world make": set(WORLD), "t2i train": set(T2I), "build": set(BUILD_PRESETS),
                       "demo": set(DEMO)}
    assert SHARED == ["demo", "full", "tiny"]


@pytest.mark.parametrize("name", SHARED)
def test_a_shared_name_is_one_size_in_every_stage(name: str) -> None:
    from fastattr.build import BUILD_PRESETS, _curation_config
    from fastattr.demo import PRESETS as DEMO
    from fastattr.t2i import T2IConfig
    from fastattr.world import PRESETS as WORLD

    # Every stage of the chain offers it: the same --preset works from the first command to the last.
    assert all(name in CHOICES[command] for command in CHAIN), {c: sorted(CHOICES[c]) for c in CHAIN}
    world, t2i = WORLD[name], T2IConfig.preset(name)
    # The T2I model is sized for the world's images, without an --image-size.
    assert t2i.image_size == t2i.unet["sample_size"] == world["image_size"]
    # The build's teacher fits the world's item count.
    _curation_config(BUILD_PRESETS[name]).check(world["n_items"])
    if name in DEMO:   # the demo's preset of that name runs those stage presets
        assert DEMO[name]["stages"] == name


def test_former_build_names_still_parse() -> None:
    base = ["build", "--model", "m", "--dataset", "d", "--out", "o"]
    assert build_parser().parse_args([*base, "--preset", "quick"]).preset == "tiny"
    assert build_parser().parse_args([*base, "--preset", "default"]).preset == "demo"
    assert build_parser().parse_args(base).preset == "demo"


def test_the_tiny_chain_runs_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from fastattr import Attributor
    from fastattr.models import load_diffusion_model
    from fastattr.world import held_out_captions

    world, model, bundle = tmp_path / "world", tmp_path / "t2i", tmp_path / "bundle"
    assert main(["world", "make", str(world), "--preset", "tiny"]) == 0
    assert main(["t2i", "train", str(world), str(model), "--preset", "tiny", "--threads", "1"]) == 0
    assert main(["build", "--model", str(model), "--dataset", str(world), "--out", str(bundle),
                 "--preset", "tiny", "--threads", "1", "--quiet"]) == 0
    assert "evaluation on 2 test queries, 64 training items" in capsys.readouterr().out
    attributor = Attributor.load(bundle)
    prompt = held_out_captions(1, seed=5)[0]
    image = load_diffusion_model(model).generate([prompt], seed=0, steps=2)[0]
    assert image.shape == (16, 16, 3)
    hits = attributor.query(image, prompt, k=3)
    assert len(hits) == 3 and len(attributor) == 64
