"""Make specs/data/names.npz: makemore's character-level training set, offline.

Karpathy's makemore reads names.txt (32,033 names) and turns every name into
examples of "three characters of context -> the next character", with "." for
the start and end of a name: "emma" gives ... -> e, ..e -> m, .em -> m,
emm -> a, mma -> . This script does the same with the short list of names
below (common first names, kept in the file so that nothing is downloaded),
and writes x (N, 3) and y (N,) as int64 indices into the vocabulary
".abcdefghijklmnopqrstuvwxyz" (27 characters, "." is 0).

    python scripts/make_names.py [OUT.npz]      (default specs/data/names.npz)
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

WORDS = """
emma olivia ava isabella sophia charlotte mia amelia harper evelyn abigail emily
elizabeth mila ella avery sofia camila aria scarlett victoria madison luna grace
chloe penelope layla riley zoey nora lily eleanor hannah lillian addison aubrey
ellie stella natalie zoe leah hazel violet aurora savannah audrey brooklyn bella
claire skylar lucy paisley everly anna caroline nova genesis emilia kennedy
samantha maya willow kinsley naomi aaliyah elena sarah ariana allison gabriella
alice madelyn cora ruby eva serenity autumn adeline hailey gianna valentina isla
eliana quinn nevaeh ivy sadie piper lydia alexa josephine emery julia delilah
arianna vivian kaylee sophie brielle madeline liam noah william james oliver
benjamin elijah lucas mason logan alexander ethan jacob michael daniel henry
jackson sebastian aiden matthew samuel david joseph carter owen wyatt john jack
luke jayden dylan grayson levi isaac gabriel julian mateo anthony jaxon lincoln
joshua christopher andrew theodore caleb ryan asher nathan thomas leo isaiah
charles josiah hudson christian hunter connor eli ezra aaron landon adrian
jonathan nolan jeremiah easton elias colton cameron carson robert angel maverick
nicholas dominic jaxson greyson adam ian austin santiago jordan cooper brayden
roman evan ezekiel xavier jose jace jameson leonardo bryson axel everett parker
kayden miles sawyer jason
"""
NAMES = WORDS.split()

CHARS = ".abcdefghijklmnopqrstuvwxyz"  # "." (index 0) starts and ends a name
BLOCK = 3  # characters of context, makemore's block_size


def examples(names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Every (context, next character) pair of every name, as makemore's build_dataset."""
    index = {c: i for i, c in enumerate(CHARS)}
    xs, ys = [], []
    for name in names:
        context = [0] * BLOCK
        for c in name + ".":
            xs.append(context)
            ys.append(index[c])
            context = context[1:] + [index[c]]
    return np.array(xs, dtype=np.int64), np.array(ys, dtype=np.int64)


def main(argv: list[str]) -> None:
    root = Path(__file__).resolve().parent.parent
    out = Path(argv[0]) if argv else root / "specs" / "data" / "names.npz"
    x, y = examples(NAMES)
    np.savez(out, x=x, y=y)
    print(
        f"{out}: {len(NAMES)} names, x {x.shape} and y {y.shape}, vocabulary {len(CHARS)}"
    )


if __name__ == "__main__":
    main(sys.argv[1:])
