"""A placement as one value: ``Placement.parse("random24_017")`` and back with ``.format()``.

Every run names its placement; the name is what folders, MLflow tags and tables show, and this
module is the one place that reads or writes one. Each form is written once, as a template
(``_TEMPLATES``): parsing matches the templates, formatting fills them, and a name that does not
come back unchanged from ``parse(name).format()`` is refused, so two spellings never name one run.

=========================  ===========================================================================
name                       edges
=========================  ===========================================================================
``none``                   no adapter (linear probe, full fine-tuning)
``parallel_K``             the K-th parallel edge (K-1, K), K = 1..2L (Fig. 1; odd K: MHA, even: FFN)
``edge_I_J``               the single edge (I, J) (Fig. 3 grid, Fig. 8, Table 5)
``parallel_all``           the 2L parallel edges; ``sequential_all`` the 2L sequential ones
``ffn_parallel``           the L parallel edges into feed-forward nodes (Fig. 6c, Table 5)
``all_edges``              all n^2 edges (Fig. 15)
``first_K`` / ``last_K``   the K parallel edges nearest the input / output
``spread_K``               K parallel edges spaced evenly, the first at (0, 1) (Fig. 9)
``randomN_DDD``            draw DDD of N edges from all n^2 (``placements.random(n, N, seed=DDD)``)
``randnrN_DDD``            draw DDD of N edges from the n(n+1)/2 non-recurrent ones (i <= j; Table 7)
``gga_N``, ``gga_N_gG``    GGA with the experiment's gamma, or gamma G; ``topk_N`` = GGA with gamma 0
``best_random_D``          the best Table 1 random placement of dataset D (Table 8, Fig. 15)
``MN_DDD``                 what search M (a key of ``SEARCHED``) chose for N adapters with seed DDD
=========================  ===========================================================================

GGA, top-k, best_random and the searches depend on results (``from_results``): their edges come
from a JSON file that a rule writes (``plan.paths``); the others are a function of the value and n.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, fields
from typing import Mapping, Optional

from .. import placements
from ..placements import Edge

# The searches beyond the paper (``adapter_placement.search``): placement method -> (search
# function, its fixed options); prune-and-regrow once per pruning criterion.
SEARCHED = {"iterative_gga": ("iterative_gga", {}), "edge_switch": ("edge_switch", {}),
            "prune_magnitude": ("prune_regrow", {"criterion": "magnitude"}),
            "prune_taylor": ("prune_regrow", {"criterion": "taylor"})}

# (method, name template), tried in this order; a method with two templates (gga, topk) uses the
# one whose fields it has.
_TEMPLATES = [
    *((fixed, fixed) for fixed in ("none", "parallel_all", "sequential_all", "ffn_parallel", "all_edges")),
    ("parallel", "parallel_{position}"),
    ("edge", "edge_{i}_{j}"),
    ("first", "first_{count}"),
    ("last", "last_{count}"),
    ("spread", "spread_{count}"),
    ("random", "random{count}_{seed:03d}"),
    ("randnr", "randnr{count}_{seed:03d}"),
    ("gga", "gga_{count}_g{gamma:g}"),
    ("gga", "gga_{count}"),
    ("topk", "topk_{count}_g{gamma:g}"),
    ("topk", "topk_{count}"),
    ("best_random", "best_random_{source}"),
    *((method, method + "{count}_{seed:03d}") for method in SEARCHED),
]
_FIELD_PATTERN = {"gamma": r"[0-9.]+", "source": r".+"}  # the others: digits
_FIELD_TYPE = {"gamma": float, "source": str}  # the others: int
_SLOT = re.compile(r"\{(\w+)(?::[^}]*)?\}")
FROM_RESULTS = ("gga", "topk", "best_random", *SEARCHED)


def _regex(template: str) -> re.Pattern:
    parts, end = [], 0
    for slot in _SLOT.finditer(template):
        parts += [re.escape(template[end:slot.start()]),
                  f"(?P<{slot[1]}>{_FIELD_PATTERN.get(slot[1], r'[0-9]+')})"]
        end = slot.end()
    return re.compile("".join(parts) + re.escape(template[end:]))


_PARSERS = [(method, template, _regex(template), set(_SLOT.findall(template))) for method, template in _TEMPLATES]


@dataclass(frozen=True)
class Placement:
    """Which edges a run adapts, as the fields of its name (module docstring)."""

    method: str  # how the edges are chosen: a template's method ("parallel", "random", "gga", ...)
    count: Optional[int] = None  # adapters of first/last/spread, random/randnr, gga/topk, a search
    seed: Optional[int] = None  # the draw of random/randnr, the seed of a search
    position: Optional[int] = None  # K of parallel_K
    i: Optional[int] = None  # edge_I_J
    j: Optional[int] = None
    gamma: Optional[float] = None  # gga_N_gG (None: the experiment's gamma)
    source: Optional[str] = None  # best_random_D: the Table 1 dataset D

    def __post_init__(self):
        self._template()  # a value that no template writes is an error here, not at format time

    @classmethod
    def parse(cls, name: str) -> "Placement":
        for method, _, regex, _ in _PARSERS:
            match = regex.fullmatch(name)
            if match:
                values = {k: _FIELD_TYPE.get(k, int)(v) for k, v in match.groupdict().items()}
                placement = cls(method, **values)
                if placement.format() != name:
                    raise ValueError(f"placement {name!r} is not written as its canonical name "
                                     f"{placement.format()!r}")
                return placement
        raise ValueError(f"unknown placement {name!r} (see adapter_placement.plan.placement)")

    def _template(self) -> str:
        given = {f.name for f in fields(self) if f.name != "method" and getattr(self, f.name) is not None}
        for method, template, _, slots in _PARSERS:
            if method == self.method and slots == given:
                return template
        raise ValueError(f"no placement {self.method!r} with fields {sorted(given)} "
                         "(see adapter_placement.plan.placement)")

    def format(self) -> str:
        return self._template().format(**{f.name: getattr(self, f.name) for f in fields(self)})

    def __str__(self) -> str:
        return self.format()

    def to_dict(self) -> dict:
        """The name and its fields (those the form has), as a batch JSON records them."""
        return {"name": self.format(), **{f.name: getattr(self, f.name) for f in fields(self)
                                          if getattr(self, f.name) is not None}}

    @property
    def from_results(self) -> bool:
        """Whether the edges come from a rule's JSON (GGA, top-k, best_random, a search)."""
        return self.method in FROM_RESULTS

    @property
    def size(self) -> Optional[int]:
        """The number of adapters the name fixes; None where it depends on the model (parallel_all,
        sequential_all, ffn_parallel, all_edges) or on other runs (best_random)."""
        if self.count is not None:
            return self.count
        return {"none": 0, "parallel": 1, "edge": 1}.get(self.method)

    @property
    def single_edge(self) -> Optional[tuple[int, int]]:
        """The edge of a single-adapter placement (edge_I_J, parallel_K), else None."""
        if self.method == "edge":
            return self.i, self.j
        if self.method == "parallel":
            return self.position - 1, self.position
        return None

    @property
    def sublayer(self) -> Optional[str]:
        """Which sub-layer parallel_K adapts: "MHA" (odd K) or "FFN" (even K); None for the others."""
        if self.method != "parallel":
            return None
        return "MHA" if self.position % 2 == 1 else "FFN"

    def gga_parameters(self, default_gamma: float) -> tuple[int, float]:
        """(N, gamma) of GGA or top-k: top-k is gamma 0, gga_N the experiment's ``default_gamma``."""
        if self.method == "topk":
            return self.count, 0.0
        if self.method != "gga":
            raise ValueError(f"placement {self.format()!r} is not a GGA placement")
        return self.count, float(default_gamma if self.gamma is None else self.gamma)

    def edges(self, num_nodes: int, derived: Optional[Mapping[str, list]] = None) -> list[Edge]:
        """The edges on a model of ``num_nodes`` nodes; ``derived`` maps the names of results-dependent
        placements to their edges, as read from their JSON file."""
        name = self.format()
        if self.from_results:
            if derived is None or name not in derived:
                raise ValueError(f"placement {name!r} comes from results: its edges are in a file "
                                 "(plan.paths) that was not read")
            edges = [Edge(int(i), int(j)) for i, j in derived[name]]
        else:
            edges = _EDGES[self.method](self, num_nodes)
        return placements.check_edges(edges, num_nodes)


_EDGES = {
    "none": lambda p, n: [],
    "parallel_all": lambda p, n: placements.parallel_all(n),
    "sequential_all": lambda p, n: placements.sequential_all(n),
    "ffn_parallel": lambda p, n: placements.ffn_parallel(n),
    "all_edges": lambda p, n: placements.all_edges(n),
    "parallel": lambda p, n: [Edge(p.position - 1, p.position)],
    "edge": lambda p, n: [Edge(p.i, p.j)],
    "first": lambda p, n: placements.first_k(n, p.count),
    "last": lambda p, n: placements.last_k(n, p.count),
    "spread": lambda p, n: placements.spread(n, p.count),
    "random": lambda p, n: placements.random(n, p.count, seed=p.seed),
    "randnr": lambda p, n: placements.random_non_recurrent(n, p.count, p.seed),
}
