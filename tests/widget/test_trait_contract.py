"""The trait contract: js/shared/types.ts and the Python widgets' synced traits stay in step.

The Python side is read through traitlets (``class_traits(sync=True)`` of the final widget
classes, minus what anywidget itself syncs); the TypeScript side by parsing the interfaces,
type aliases and ``as const`` arrays of ``js/shared/*.ts``. A renamed, added, dropped or retyped
trait fails here instead of reaching the browser as ``undefined``.
"""

from __future__ import annotations

import difflib
import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path

import anywidget
import pytest
import traitlets

from lucid_widgets.widget import LivePreview, Microscope

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT / "js" / "shared"
BYTES_TYPES = {"DataView", "ArrayBuffer", "Uint8Array"}
SCALARS = {"string": "string", "number": "number", "boolean": "boolean"}
# traitlets class -> kind; checked in MRO order, so Enum (a string choice) comes before Any
PY_KINDS = [
    (traitlets.Bytes, "bytes"),
    (traitlets.Bool, "boolean"),
    ((traitlets.Int, traitlets.Float), "number"),
    ((traitlets.Unicode, traitlets.Enum), "string"),
    ((traitlets.List, traitlets.Tuple, traitlets.Set), "array"),
    (traitlets.Dict, "object"),
]


@dataclass(frozen=True)
class Kind:
    """What a value is on the wire: a kind, the allowed literals, the element kind of an array."""

    kind: str
    literals: frozenset | None = None
    element: Kind | None = None

    def __str__(self) -> str:
        return f"{self.kind} of {self.element}" if self.element else self.kind


# --- TypeScript side ---------------------------------------------------------------------------


def _strip_comments(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


def _split_top(text: str, seps: str) -> list[str]:
    """Split at the characters in ``seps`` that sit outside brackets and quotes."""
    parts, depth, quote, start = [], 0, "", 0
    for i, ch in enumerate(text):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch in "([{<":
            depth += 1
        elif ch in ")]}" or (ch == ">" and text[i - 1 : i] != "="):  # "=>" closes nothing
            depth -= 1
        elif depth == 0 and ch in seps:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [part.strip() for part in parts if part.strip()]


def _block(text: str, open_at: int, pair: str = "{}") -> str:
    """The text between the bracket at ``open_at`` and its matching close."""
    depth = 0
    for i in range(open_at, len(text)):
        depth += {pair[0]: 1, pair[1]: -1}.get(text[i], 0)
        if depth == 0:
            return text[open_at + 1 : i]
    raise ValueError(f"unbalanced {pair}")


@dataclass
class TsModule:
    """The declarations of js/shared: interfaces (members, bases), type aliases, const arrays."""

    interfaces: dict[str, tuple[dict[str, str], list[str]]]
    aliases: dict[str, str]
    consts: dict[str, list[str]]

    @classmethod
    def parse(cls, text: str) -> TsModule:
        text = _strip_comments(text)
        interfaces = {}
        for m in re.finditer(r"interface\s+(\w+)(?:\s+extends\s+([\w\s,]+))?\s*\{", text):
            members = {}
            for item in _split_top(_block(text, m.end() - 1), ";\n"):
                name, _, type_text = item.partition(":")
                members[name.strip().rstrip("?")] = type_text.strip()
            bases = [b.strip() for b in (m.group(2) or "").split(",") if b.strip()]
            interfaces[m.group(1)] = (members, bases)
        aliases = {
            m.group(1): _split_top(text[m.end() :], ";")[0]
            for m in re.finditer(r"\btype\s+(\w+)\s*=", text)
        }
        consts = {
            m.group(1): re.findall(r'"([^"]*)"', m.group(2))
            for m in re.finditer(r"const\s+(\w+)\s*=\s*\[([^\]]*)\]\s*as\s+const", text)
        }
        return cls(interfaces, aliases, consts)

    def members(self, interface: str) -> dict[str, str]:
        """All members of an interface, its bases' included."""
        own, bases = self.interfaces[interface]
        merged: dict[str, str] = {}
        for base in bases:
            merged.update(self.members(base))
        return {**merged, **own}

    def kind(self, type_text: str) -> Kind:
        """The wire kind of a TypeScript type; every member of a union must share it."""
        alternatives = [t for t in _split_top(type_text, "|") if t not in ("null", "undefined")]
        kinds = {self._kind_of(t) for t in alternatives}
        by_kind = {k.kind for k in kinds}
        if len(by_kind) != 1:
            raise ValueError(f"type {type_text!r} mixes kinds {sorted(by_kind)}")
        if len(kinds) == 1:
            return kinds.pop()
        literal_sets = [k.literals for k in kinds]
        if any(s is None for s in literal_sets):
            return Kind(by_kind.pop())
        return Kind(by_kind.pop(), frozenset().union(*literal_sets))

    def _kind_of(self, t: str) -> Kind:
        t = t.strip()
        if t.startswith("(") and _block(t, 0, "()") == t[1:-1]:
            return self.kind(t[1:-1])
        if m := re.fullmatch(r'"([^"]*)"', t):
            return Kind("string", frozenset([m.group(1)]))
        if t in SCALARS:
            return Kind(SCALARS[t])
        if re.fullmatch(r"-?\d+(\.\d+)?", t):
            return Kind("number")
        if t in ("true", "false"):
            return Kind("boolean")
        if t.endswith("[]"):
            return Kind("array", element=self.kind(t[:-2]))
        if m := re.fullmatch(r"(?:Readonly)?Array<(.*)>", t):
            return Kind("array", element=self.kind(m.group(1)))
        if m := re.fullmatch(r"\(typeof (\w+)\)\[number\]", t):
            return Kind("string", frozenset(self.consts[m.group(1)]))
        if t in BYTES_TYPES:
            return Kind("bytes")
        if t.startswith("{") or t.startswith("Record<") or t in self.interfaces or "&" in t:
            return Kind("object")
        if t in self.aliases:
            return self.kind(self.aliases[t])
        raise ValueError(f"no wire kind known for the TypeScript type {t!r}")


def shared_module() -> TsModule:
    """Every declaration in js/shared/*.ts (types.ts imports UnitView from views.ts)."""
    return TsModule.parse("\n".join(p.read_text() for p in sorted(SHARED.glob("*.ts"))))


# --- Python side -------------------------------------------------------------------------------


def python_kind(trait: traitlets.TraitType) -> Kind:
    """The wire kind of a traitlets trait (List(Dict()) -> an array of objects)."""
    for types, kind in PY_KINDS:
        if isinstance(trait, types):
            inner = getattr(trait, "_trait", None)
            element = python_kind(inner) if kind == "array" and inner is not None else None
            return Kind(kind, element=element)
    raise TypeError(f"no wire kind known for {type(trait).__name__}: add it to PY_KINDS")


def synced_traits(cls: type) -> dict[str, traitlets.TraitType]:
    """The traits a widget class syncs itself (anywidget's own and private ones left out)."""
    base = anywidget.AnyWidget.class_traits(sync=True)
    return {
        name: trait
        for name, trait in cls.class_traits(sync=True).items()
        if name not in base and not name.startswith("_")
    }


# --- the contract ------------------------------------------------------------------------------


def contract_errors(cls: type, ts: TsModule, interface: str) -> list[str]:
    """Every way the Python class and the TypeScript interface disagree (empty when in step)."""
    py, members = synced_traits(cls), ts.members(interface)
    errors = []
    for name in sorted(set(py) - set(members)):
        near = difflib.get_close_matches(name, list(members), n=1)
        hint = f" (the TS has {near[0]!r})" if near else ""
        errors.append(f"{cls.__name__}.{name} is missing from {interface}{hint}")
    for name in sorted(set(members) - set(py)):
        near = difflib.get_close_matches(name, list(py), n=1)
        hint = f" (Python has {near[0]!r})" if near else ""
        errors.append(f"{interface}.{name} is not a synced trait of {cls.__name__}{hint}")
    for name in sorted(set(py) & set(members)):
        want, got = python_kind(py[name]), ts.kind(members[name])
        if want.kind != got.kind or (want.element and got.element and want.element != got.element):
            errors.append(f"{name}: Python sends {want}, {interface} says {members[name]!r}")
        default = py[name].default()
        if got.literals is not None and default not in got.literals:
            errors.append(
                f"{name}: {cls.__name__}'s default {default!r} not in {sorted(got.literals)}"
            )
    return errors


WIDGETS = [(LivePreview, "PreviewTraits"), (Microscope, "MicroscopeTraits")]


@pytest.mark.parametrize(("cls", "interface"), WIDGETS, ids=["LivePreview", "Microscope"])
def test_typescript_interface_matches_python_traits(cls, interface):
    errors = contract_errors(cls, shared_module(), interface)
    assert not errors, "js/shared/types.ts and the Python traits differ:\n" + "\n".join(errors)


def test_every_python_trait_has_a_kind():
    traits = synced_traits(Microscope)
    assert len(traits) >= 30  # the Microscope syncs its grid, examples and sample traits too
    assert python_kind(traits["frame"]) == Kind("bytes")
    assert python_kind(traits["layers"]) == Kind("array", element=Kind("object"))


def _renamed(text: str, old: str, new: str) -> TsModule:
    assert f"  {old}:" in text
    return TsModule.parse(text.replace(f"  {old}:", f"  {new}:", 1))


def test_a_renamed_trait_fails_the_contract():
    text = "\n".join(p.read_text() for p in sorted(SHARED.glob("*.ts")))
    errors = contract_errors(
        LivePreview, _renamed(text, "total_steps", "totalSteps"), "PreviewTraits"
    )
    assert errors == [
        "LivePreview.total_steps is missing from PreviewTraits (the TS has 'totalSteps')",
        "PreviewTraits.totalSteps is not a synced trait of LivePreview (Python has 'total_steps')",
    ]


def test_a_retyped_or_narrowed_trait_fails_the_contract():
    text = "\n".join(p.read_text() for p in sorted(SHARED.glob("*.ts")))
    retyped = TsModule.parse(text.replace("  step: number;", "  step: string;", 1))
    assert contract_errors(LivePreview, retyped, "PreviewTraits") == [
        "step: Python sends number, PreviewTraits says 'string'"
    ]
    narrowed = TsModule.parse(text.replace('mode: "live" | "microscope";', 'mode: "live";', 1))
    assert contract_errors(Microscope, narrowed, "MicroscopeTraits") == [
        "mode: Microscope's default 'microscope' not in ['live']"
    ]


def test_typescript_kinds_are_read_through_aliases_unions_and_arrays():
    ts = TsModule.parse(
        'type Binary = DataView | ArrayBuffer | null;\nconst V = ["a", "b"] as const;\n'
        "export type View = (typeof V)[number];\ninterface Row { x: number }\n"
        "export type Mixed = string | number;\n"
    )
    assert ts.kind("Binary") == Kind("bytes")
    assert ts.kind("View") == Kind("string", frozenset({"a", "b"}))
    assert ts.kind("Row[]") == Kind("array", element=Kind("object"))
    assert ts.kind("(Row & { y: number })[]") == Kind("array", element=Kind("object"))
    with pytest.raises(ValueError, match="mixes kinds"):
        ts.kind("Mixed")


def test_views_module_is_generated_from_the_python_constants():
    spec = importlib.util.spec_from_file_location("gen", ROOT / "scripts" / "gen_js_constants.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    assert (SHARED / "views.ts").read_text() == gen.render(), (
        "js/shared/views.ts is out of date: run python3 scripts/gen_js_constants.py"
    )
    from lucid_widgets.widget.views import IMAGE_VIEWS, UNIT_VIEWS

    ts = shared_module()
    assert ts.kind("UnitView").literals == frozenset(UNIT_VIEWS)
    assert ts.consts["UNIT_VIEWS"] == list(UNIT_VIEWS)
    assert set(IMAGE_VIEWS) <= set(UNIT_VIEWS)


def test_settings_params_match_the_engine():
    from lucid_widgets.widget.engine import PARAMS

    ts = shared_module()
    assert ts.consts["PARAMS"] == list(PARAMS)
    for interface in ("PreviewSettings", "GridSettings"):
        assert ts.kind(ts.members(interface)["param"]).literals == frozenset(PARAMS)
