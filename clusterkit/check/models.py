"""Sequential specifications that histories are checked against.

A model turns each operation into a *step*: a function from a state to the
next state, or :data:`ILLEGAL` when the operation could not have returned what
it did from that state. States are hashable (None, ints, strings, tuples),
which is what lets the checker memoise (linearized set, state) pairs.

Operations that constrain nothing are dropped before the search: a read whose
outcome is unknown, and (except a failed compare-and-set, which observed that
the value differed) any operation that failed.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from types import MappingProxyType
from typing import Any

from .history import HistoryError, Operation

ILLEGAL: Any = object()  # immutable sentinel: "this step is not possible from this state"
Step = Callable[[Hashable], Hashable]


class Model:
    name = "model"
    functions: tuple[str, ...] = ()
    per_key = False

    def init(self) -> Hashable:
        return None

    def prepare(self, ops: Sequence[Operation], source: str = "<history>") -> list[Operation]:
        """Validate the operations and drop those that constrain nothing."""
        kept = []
        for op in ops:
            if op.f not in self.functions:
                raise HistoryError(
                    source, op.call_line, f"{self.name} model has no function {op.f!r} (it has {', '.join(self.functions)})"
                )
            self.validate(op, source)
            if self.keeps(op):
                kept.append(op)
        return kept

    def validate(self, op: Operation, source: str) -> None:
        pass

    def keeps(self, op: Operation) -> bool:
        if op.status == "fail":
            return False
        return not (op.status == "info" and self.read_only(op))  # an unknown read constrains nothing

    def partition(self, ops: Sequence[Operation]) -> dict[Any, list[Operation]]:
        """Independent sub-histories (P-compositionality): one per key for a key-value model."""
        if not self.per_key:
            return {None: list(ops)}
        parts: dict[Any, list[Operation]] = {}
        for op in ops:
            parts.setdefault(op.key, []).append(op)
        return parts

    def step(self, op: Operation) -> Step:
        raise NotImplementedError

    def read_only(self, op: Operation) -> bool:
        """Does ``op`` leave every state it is legal in unchanged? (lets the search place it greedily)"""
        return op.f in ("read", "get")


class RegisterModel(Model):
    """A single read/write register, initially None."""

    name = "register"
    functions = ("read", "write")

    def step(self, op: Operation) -> Step:
        if op.f == "write":
            value = op.input
            return lambda state: value
        out = op.output
        return lambda state: state if state == out else ILLEGAL


class CasRegisterModel(RegisterModel):
    """A register with compare-and-set: ``cas [a b]`` sets b if the value is a.

    A cas that reported ``fail`` did not apply, which tells us the value was
    not a: it stays in the history as an observation.
    """

    name = "cas-register"
    functions = ("read", "write", "cas")

    def validate(self, op: Operation, source: str) -> None:
        if op.f == "cas" and not (isinstance(op.input, (tuple, list)) and len(op.input) == 2):
            raise HistoryError(source, op.call_line, f"cas needs [expected new], got {op.input!r}")

    def keeps(self, op: Operation) -> bool:
        if op.f == "cas" and op.status == "fail":
            return True
        return super().keeps(op)

    def step(self, op: Operation) -> Step:
        if op.f != "cas":
            return super().step(op)
        expect, new = op.input
        if op.status == "ok":
            return lambda state: new if state == expect else ILLEGAL
        if op.status == "fail":
            return lambda state: state if state != expect else ILLEGAL
        return lambda state: new if state == expect else state  # unknown outcome: whatever cas would do

    def read_only(self, op: Operation) -> bool:
        return op.f == "read" or (op.f == "cas" and op.status == "fail")


class KVModel(Model):
    """A map of string values: get, put, append, delete; every key starts as "" and is checked independently."""

    name = "kv"
    functions = ("get", "put", "append", "delete")
    per_key = True

    def init(self) -> Hashable:
        return ""

    def validate(self, op: Operation, source: str) -> None:
        if op.f in ("put", "append") and not isinstance(op.input, str):
            raise HistoryError(source, op.call_line, f"{op.f} needs a string value, got {op.input!r}")

    def step(self, op: Operation) -> Step:
        f = op.f
        if f == "get":
            out = "" if op.output is None else op.output
            return lambda state: state if state == out else ILLEGAL
        if f == "put":
            value = op.input
            return lambda state: value
        if f == "append":
            suffix = op.input
            return lambda state: state + suffix
        return lambda state: ""


MODELS: MappingProxyType[str, type[Model]] = MappingProxyType(
    {
        "register": RegisterModel,
        "cas-register": CasRegisterModel,
        "kv": KVModel,
    }
)


def model_for(name: str) -> Model:
    try:
        return MODELS[name]()
    except KeyError:
        raise ValueError(f"unknown model {name!r} (expected one of {', '.join(MODELS)})") from None


def guess_model(ops: Sequence[Operation]) -> Model:
    """The model whose functions the history uses: cas → cas-register, get/put/append → kv, else register."""
    fs = {op.f for op in ops}
    if "cas" in fs:
        return CasRegisterModel()
    if fs & {"get", "put", "append", "delete"}:
        return KVModel()
    return RegisterModel()
