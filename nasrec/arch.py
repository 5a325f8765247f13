"""Architectures and search spaces.

An `Arch` is one sub-network of the elastic supernet: a small frozen value with a canonical JSON form
and a stable id. A `SearchSpace` says which archs exist (read from YAML in `search_spaces/`), which
supernet holds them all, and validates an arch against it.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from nasrec.errors import ConfigError

ATTENTION_KINDS = ("softmax", "linear")
GATE_HIDDEN = 32  # width of the data-aware gates' hidden layer (EASRec)
AttentionKind = Literal["softmax", "linear"]


@dataclass(frozen=True)
class Arch:
    """One sub-network: leading slices of the supernet's weights."""

    depth: int  # number of blocks (the first `depth` blocks)
    hidden: int  # residual width
    inner: tuple[int, ...]  # FFN width of each block, len == depth
    embedding: int  # item embedding size; projected to `hidden` when it differs
    heads: int
    attention: AttentionKind = "softmax"
    # EASRec data-aware gates on the FFN: 0 none, 1 on the first dense layer, 2 on both. Not a choice of a
    # space: a strategy that trains gates keeps them in the archs it derives.
    gates: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "inner", tuple(int(i) for i in self.inner))
        if len(self.inner) != self.depth:
            raise ConfigError(f"arch: inner has {len(self.inner)} entries but depth is {self.depth}")
        if min(self.depth, self.hidden, self.embedding, self.heads, *self.inner, 1) < 1:
            raise ConfigError(f"arch: every size must be >= 1, got {self.to_dict()}")
        if self.hidden % self.heads:
            raise ConfigError(f"arch: hidden {self.hidden} is not divisible by heads {self.heads}")
        if self.gates not in (0, 1, 2):
            raise ConfigError(f"arch: gates must be 0, 1 or 2, got {self.gates!r}")
        if self.attention not in ATTENTION_KINDS:
            raise ConfigError(f"arch: attention must be one of {ATTENTION_KINDS}, got {self.attention!r}")

    @property
    def projected(self) -> bool:
        """Whether item embeddings are projected to the hidden width (embedding != hidden)."""
        return self.embedding != self.hidden

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["inner"] = list(self.inner)
        if not self.gates:
            del d["gates"]  # keeps the canonical form (and ids) of gate-less archs short
        return d

    def to_json(self) -> str:
        """Canonical JSON: sorted keys, no spaces; equal archs give equal strings."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @property
    def id(self) -> str:
        return hashlib.sha1(self.to_json().encode()).hexdigest()[:12]

    @property
    def label(self) -> str:
        inner = ".".join(str(i) for i in self.inner)
        gates = f"-g{self.gates}" if self.gates else ""
        return f"L{self.depth}-h{self.hidden}-i{inner}-e{self.embedding}-a{self.heads}-{self.attention}{gates}"

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Arch:
        fields = {"depth", "hidden", "inner", "embedding", "heads", "attention", "gates"}
        unknown = set(d) - fields
        missing = fields - {"attention", "gates"} - set(d)
        if unknown or missing:
            raise ConfigError(
                f"arch: unknown fields {sorted(unknown)}, missing fields {sorted(missing)}; "
                f"expected {sorted(fields)}"
            )
        inner = d["inner"]
        if isinstance(inner, int):  # one width for every block
            inner = [inner] * int(d["depth"])
        try:
            return cls(
                depth=int(d["depth"]),
                hidden=int(d["hidden"]),
                inner=tuple(int(i) for i in inner),
                embedding=int(d["embedding"]),
                heads=int(d["heads"]),
                attention=d.get("attention", "softmax"),
                gates=int(d.get("gates", 0)),
            )
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"arch: {exc}") from exc

    @classmethod
    def from_json(cls, text: str) -> Arch:
        try:
            d = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"arch: not valid JSON ({exc.msg} at column {exc.colno}): {text[:80]!r}") from exc
        if not isinstance(d, dict):
            raise ConfigError(f"arch: expected a JSON object, got {text[:80]!r}")
        return cls.from_dict(d)


# --- search-space YAML schema -------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SupernetSpec(_Strict):
    """The largest network of a space: every arch is a slice of it."""

    hidden: int = Field(gt=0)
    inner: int = Field(gt=0)
    embedding: int = Field(gt=0)
    depth: int = Field(gt=0)
    heads: int = Field(gt=0)
    max_len: int = Field(gt=0)
    dropout: float = Field(default=0.2, ge=0.0, lt=1.0)
    # dropout on the softmax attention weights while training (SASRec's and RecBole's attn dropout)
    attention_dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    norm: Literal["pre", "post"] = "pre"
    # "transformer": item table N(0, 1/embedding) read x sqrt(embedding), xavier-uniform linears;
    # "bert": every weight N(0, 0.02), items read unscaled (BERT's and RecBole's SASRec's initialisation)
    init: Literal["transformer", "bert"] = "transformer"
    # LayerNorm over item + position embeddings before the first block (BERT, RecBole's SASRec)
    embedding_norm: bool = False
    # dropout on the FFN's inner activations, as the original SASRec; RecBole's FFN drops only its output
    ffn_dropout: bool = True
    # "right": the newest item has the last position (SASRec's); "left": the oldest item of the window has
    # position 0, so a short history's positions count from its start (RecBole's left-aligned sequences)
    positions: Literal["right", "left"] = "right"


class WidthChoice(_Strict):
    """Widths as explicit values, as pruning intensities of the supernet's width, or (inner only)
    as a multiple of the arch's hidden width."""

    values: list[int] | None = None
    intensities: list[float] | None = None
    hidden_ratio: float | None = None  # inner = ratio * hidden
    tied: bool = False  # embedding only: embedding = hidden (no projection)

    @model_validator(mode="after")
    def _one_kind(self) -> WidthChoice:
        given = [self.values is not None, self.intensities is not None, self.hidden_ratio is not None, self.tied]
        if sum(given) != 1:
            raise ValueError("give exactly one of values, intensities, hidden_ratio, tied")
        for p in self.intensities or []:
            if not 0.0 <= p < 1.0:
                raise ValueError(f"pruning intensity {p} is outside [0, 1)")
        return self

    def resolve(self, maximum: int, field: str) -> list[int]:
        if self.values is not None:
            widths = list(self.values)
        elif self.intensities is not None:
            widths = [round(maximum * (1.0 - p)) for p in self.intensities]
        else:
            raise ConfigError(f"{field}: hidden_ratio/tied are resolved per arch")
        for w in widths:
            if not 1 <= w <= maximum:
                raise ConfigError(f"{field}: width {w} is outside 1..{maximum} (the supernet's {field})")
        return sorted(set(widths), reverse=True)


def _width(v: Any) -> Any:
    if isinstance(v, list):
        return {"values": v}
    if v == "tied":
        return {"tied": True}
    return v


class ChoicesSpec(_Strict):
    depth: list[int]
    hidden: WidthChoice
    inner: WidthChoice
    embedding: WidthChoice = WidthChoice(tied=True)
    heads: list[int]
    attention: list[AttentionKind] = ["softmax"]
    inner_per_block: bool = True  # False: one inner width shared by all blocks

    _coerce = field_validator("hidden", "inner", "embedding", mode="before")(lambda v: _width(v))


class SpaceSpec(_Strict):
    name: str
    description: str = ""
    supernet: SupernetSpec
    choices: ChoicesSpec


@dataclass(frozen=True)
class SearchSpace:
    """The archs a strategy may pick from, and the supernet that holds them."""

    name: str
    description: str
    supernet: SupernetSpec
    depths: tuple[int, ...]
    hiddens: tuple[int, ...]  # descending
    embedding_choice: WidthChoice
    inner_choice: WidthChoice
    heads: tuple[int, ...]
    attentions: tuple[AttentionKind, ...]
    inner_per_block: bool
    source: str  # the YAML file it came from

    @classmethod
    def from_spec(cls, spec: SpaceSpec, source: str) -> SearchSpace:
        sn, ch = spec.supernet, spec.choices
        where = f"{source}: choices"
        hiddens = ch.hidden.resolve(sn.hidden, "hidden")
        for d in ch.depth:
            if not 1 <= d <= sn.depth:
                raise ConfigError(f"{where}.depth: {d} is outside 1..{sn.depth} (supernet depth)")
        for a in ch.heads:
            if a > sn.heads:
                raise ConfigError(f"{where}.heads: {a} exceeds the supernet's {sn.heads} heads")
            bad = [h for h in hiddens if h % a]
            if bad:
                raise ConfigError(f"{where}.heads: hidden widths {bad} are not divisible by {a} heads")
        if ch.hidden.tied or ch.hidden.hidden_ratio is not None:
            raise ConfigError(f"{where}.hidden: give values or intensities")
        if ch.embedding.hidden_ratio is not None:
            raise ConfigError(f"{where}.embedding: give values, intensities or 'tied'")
        if ch.inner.tied:
            raise ConfigError(f"{where}.inner: give values, intensities or hidden_ratio")
        space = cls(
            name=spec.name,
            description=spec.description,
            supernet=sn,
            depths=tuple(sorted(set(ch.depth))),
            hiddens=tuple(hiddens),
            embedding_choice=ch.embedding,
            inner_choice=ch.inner,
            heads=tuple(sorted(set(ch.heads))),
            attentions=tuple(dict.fromkeys(ch.attention)),
            inner_per_block=ch.inner_per_block,
            source=source,
        )
        for h in space.hiddens:  # resolve once so errors surface at load time
            space.inner_widths(h)
            space.embedding_widths(h)
        return space

    # -- choices per arch ------------------------------------------------------------------------
    def embedding_widths(self, hidden: int) -> tuple[int, ...]:
        if self.embedding_choice.tied:
            if hidden > self.supernet.embedding:
                raise ConfigError(
                    f"{self.source}: embedding is tied to hidden but hidden {hidden} exceeds the "
                    f"supernet embedding {self.supernet.embedding}"
                )
            return (hidden,)
        return tuple(self.embedding_choice.resolve(self.supernet.embedding, "embedding"))

    def inner_widths(self, hidden: int) -> tuple[int, ...]:
        if self.inner_choice.hidden_ratio is not None:
            w = round(self.inner_choice.hidden_ratio * hidden)
            if not 1 <= w <= self.supernet.inner:
                raise ConfigError(
                    f"{self.source}: inner = {self.inner_choice.hidden_ratio} x hidden {hidden} = {w} "
                    f"is outside 1..{self.supernet.inner}"
                )
            return (w,)
        return tuple(self.inner_choice.resolve(self.supernet.inner, "inner"))

    def inner_options(self, depth: int, hidden: int) -> Iterator[tuple[int, ...]]:
        widths = self.inner_widths(hidden)
        if self.inner_per_block:
            yield from itertools.product(widths, repeat=depth)
        else:
            for w in widths:
                yield (w,) * depth

    # -- enumeration -----------------------------------------------------------------------------
    def __iter__(self) -> Iterator[Arch]:
        for hidden in self.hiddens:
            for emb in self.embedding_widths(hidden):
                for heads in self.heads:
                    for attention in self.attentions:
                        for depth in self.depths:
                            for inner in self.inner_options(depth, hidden):
                                yield Arch(depth, hidden, inner, emb, heads, attention)

    def __len__(self) -> int:
        total = 0
        for hidden in self.hiddens:
            n_inner = len(self.inner_widths(hidden))
            per_depth = sum(n_inner**d if self.inner_per_block else n_inner for d in self.depths)
            total += len(self.embedding_widths(hidden)) * len(self.heads) * len(self.attentions) * per_depth
        return total

    def max_arch(self, attention: AttentionKind | None = None) -> Arch:
        """The largest arch: every width at its maximum (the first listed attention kind by default)."""
        h = self.hiddens[0]
        d = self.depths[-1]
        return Arch(d, h, (max(self.inner_widths(h)),) * d, max(self.embedding_widths(h)), self.heads[-1],
                    attention or self.attentions[0])

    def min_arch(self, attention: AttentionKind | None = None) -> Arch:
        """The smallest arch by every width (attention kind: the given one, else the first listed).

        Both extremes use the largest head count: heads change no weight, only how they are split."""
        h = self.hiddens[-1]
        d = self.depths[0]
        return Arch(d, h, (min(self.inner_widths(h)),) * d, min(self.embedding_widths(h)), self.heads[-1],
                    attention or self.attentions[0])

    def validate(self, arch: Arch) -> Arch:
        """Return `arch` if it belongs to this space, else raise naming the offending field.
        (Gates are not a choice of the space; any gate setting is accepted.)"""

        def bad(field: str, value: Any, allowed: Any) -> ConfigError:
            return ConfigError(f"arch {arch.label} is not in space {self.name!r}: {field}={value}, allowed {allowed}")

        if arch.depth not in self.depths:
            raise bad("depth", arch.depth, list(self.depths))
        if arch.hidden not in self.hiddens:
            raise bad("hidden", arch.hidden, list(self.hiddens))
        if arch.embedding not in self.embedding_widths(arch.hidden):
            raise bad("embedding", arch.embedding, list(self.embedding_widths(arch.hidden)))
        widths = self.inner_widths(arch.hidden)
        if any(i not in widths for i in arch.inner):
            raise bad("inner", list(arch.inner), f"each of {list(widths)}")
        if not self.inner_per_block and len(set(arch.inner)) > 1:
            raise bad("inner", list(arch.inner), "one width shared by all blocks")
        if arch.heads not in self.heads:
            raise bad("heads", arch.heads, list(self.heads))
        if arch.attention not in self.attentions:
            raise bad("attention", arch.attention, list(self.attentions))
        return arch

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "source": self.source,
            "supernet": self.supernet.model_dump(),
            "choices": {
                "depth": list(self.depths),
                "hidden": list(self.hiddens),
                "inner": {h: list(self.inner_widths(h)) for h in self.hiddens},
                "inner_per_block": self.inner_per_block,
                "embedding": {h: list(self.embedding_widths(h)) for h in self.hiddens},
                "heads": list(self.heads),
                "attention": list(self.attentions),
            },
            "n_archs": len(self),
        }


# --- loading and the registry -------------------------------------------------------------------


def _spaces_dirs() -> list[Path]:
    """Built-in spaces: the repo's search_spaces/ (editable install) or the copy inside the wheel."""
    here = Path(__file__).resolve().parent
    return [d for d in (here.parent / "search_spaces", here / "_search_spaces") if d.is_dir()]


def load_space_file(path: str | Path) -> SearchSpace:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: search space file not found") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise ConfigError(f"{where}: invalid YAML ({getattr(exc, 'problem', exc)})") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping with name, supernet, choices")
    try:
        spec = SpaceSpec.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"])
        raise ConfigError(f"{path}: field {field!r}: {err['msg']} (got {err.get('input')!r})") from exc
    try:
        return SearchSpace.from_spec(spec, str(path))
    except ConfigError as exc:
        message = str(exc)
        raise ConfigError(message if message.startswith(str(path)) else f"{path}: {message}") from exc


def list_spaces() -> dict[str, Path]:
    """Names of the built-in spaces and their files."""
    found: dict[str, Path] = {}
    for d in _spaces_dirs():
        for f in sorted(d.glob("*.yaml")):
            found.setdefault(f.stem, f)
    return found


def get_space(name_or_path: str) -> SearchSpace:
    """A built-in space by name, or a YAML file by path."""
    if name_or_path.endswith((".yaml", ".yml")) or Path(name_or_path).is_file():
        return load_space_file(name_or_path)
    spaces = list_spaces()
    if name_or_path not in spaces:
        raise ConfigError(f"unknown search space {name_or_path!r}; known: {', '.join(spaces)} (or a .yaml path)")
    space = load_space_file(spaces[name_or_path])
    if space.name != name_or_path:
        raise ConfigError(f"{spaces[name_or_path]}: name {space.name!r} does not match the file name")
    return space


def parse_arch(text: str, space: SearchSpace) -> Arch:
    """`max`, `min`, a JSON object or a path to a JSON file; validated against the space."""
    if text == "max":
        return space.max_arch()
    if text == "min":
        return space.min_arch()
    if text.lstrip().startswith("{"):
        return space.validate(Arch.from_json(text))
    path = Path(text)
    if path.is_file():
        return space.validate(Arch.from_json(path.read_text()))
    raise ConfigError(f"--arch: expected max, min, a JSON object or a JSON file, got {text!r}")
