"""A dry run of a pickle's opcodes: what it would build, checked before anything is built.

:func:`scan` walks the opcodes (``pickletools.genops``, which runs nothing) and follows
the unpickler's stack and memo with one small record per object, holding how deeply
that object nests containers. It refuses, before a single object exists:

- nesting deeper than ``max_depth``. CPython hashes a tuple by hashing its elements
  recursively in C, with no recursion guard: a 200,000-deep tuple used as a dict key
  or put in a set ends the process with SIGSEGV. A data pickle nests 2 or 3 deep.
- more than ``max_items`` elements in all lists, tuples, sets and dicts together (a
  dict entry counts its key and its value), which bounds the memory of containers: a
  few bytes of opcodes per element could otherwise make a 256 MB file hold gigabytes.
- a memo index beyond the number of opcodes seen: CPython's C unpickler sizes its memo
  table by the largest index a ``PUT`` names, so ``LONG_BINPUT 4294967295`` alone asks
  for 32 GiB. Real pickles number their memo entries 0, 1, 2, ...
- a frame longer than the pickle.

The records follow the real objects: a memo ``GET`` returns the record ``PUT`` stored,
so appending to a list fetched from the memo deepens that list's record. Depths are
exact for tuples and frozensets (immutable, built from finished parts), the only
containers CPython hashes; for lists, dicts and sets they are a lower bound when a
container is filled after being put inside another one, which is why the unpickled
result is walked again with the same depth limit (``safe_pickle``) before it is used.
"""

from __future__ import annotations

import pickletools

from . import limits


class Refused(Exception):
    """The pickle asks for more than the limits allow, or numbers its memo falsely."""


class Corrupt(Exception):
    """The opcodes cannot be parsed (truncated or damaged bytes)."""


class _Obj:
    """What the scan knows of one object on the stack: how deep it nests containers."""
    __slots__ = ("depth",)

    def __init__(self, depth: int = 0) -> None:
        self.depth = depth


_MARK = object()
_MEMO_PUT = {"PUT", "BINPUT", "LONG_BINPUT"}
_MEMO_GET = {"GET", "BINGET", "LONG_BINGET"}
# opcodes that put their popped objects into a new container
_BUILDS = {"EMPTY_LIST", "EMPTY_DICT", "EMPTY_TUPLE", "EMPTY_SET", "LIST", "DICT", "TUPLE",
           "TUPLE1", "TUPLE2", "TUPLE3", "FROZENSET"}
# opcodes that put their popped objects into the container below them, which stays
_FILLS = {"APPEND", "APPENDS", "SETITEM", "SETITEMS", "ADDITEMS", "BUILD"}


def _has_mark(spec) -> int:
    """Index of the mark in an opcode's stack_before, or -1."""
    for i, s in enumerate(spec):
        if s is pickletools.markobject:
            return i
    return -1


def _kind(op) -> tuple:
    """``(kind, mark index, objects popped below the mark, objects pushed)`` of an opcode."""
    name = op.name
    if name in _MEMO_PUT or name == "MEMOIZE":
        kind = name
    elif name in _MEMO_GET or name in ("FRAME", "STOP", "MARK", "POP", "POP_MARK", "DUP"):
        kind = "GET" if name in _MEMO_GET else name
    elif name in _FILLS:
        kind = "fill"
    elif name in _BUILDS:
        kind = "build"
    else:
        kind = "other"
    mark = _has_mark(op.stack_before)
    below = mark if mark >= 0 else len(op.stack_before)
    return kind, mark, below, len(op.stack_after)


_KINDS = {op.code: _kind(op) for op in pickletools.opcodes}


def scan(data: bytes, max_depth: int, max_items: int) -> None:
    """Walk the opcodes of ``data``; raise :class:`Refused` or :class:`Corrupt`."""
    stack: list = []
    memo: dict = {}
    items = 0

    def pop():
        # an underflow or a pop through a mark is a corrupt pickle: the unpickler will
        # say so; the scan goes on with a placeholder
        return stack.pop() if stack and stack[-1] is not _MARK else _Obj()

    def pop_to_mark() -> list:
        out = []
        while stack and stack[-1] is not _MARK:
            out.append(stack.pop())
        if stack:
            stack.pop()
        return out

    try:
        for count, (op, arg, _) in enumerate(pickletools.genops(data)):
            kind, mark, nbelow, nafter = _KINDS[op.code]
            if kind == "other" and not nbelow and mark < 0 and nafter == 1:  # an atom
                stack.append(_Obj())
                continue
            if kind in _MEMO_PUT or kind == "MEMOIZE":
                index = len(memo) if kind == "MEMOIZE" else arg
                if not isinstance(index, int) or not 0 <= index <= count:
                    raise Refused(f"memo index {index!r} at opcode {count} (a pickle "
                                  f"numbers its memo from 0)")
                if stack and stack[-1] is not _MARK:
                    memo[index] = stack[-1]
                continue
            if kind == "GET":
                stack.append(memo.get(arg) or _Obj())
                continue
            if kind == "FRAME":
                if arg > len(data):
                    raise Refused(f"frame of {arg} bytes in a {len(data)}-byte pickle")
                continue
            if kind == "STOP":
                return
            if kind == "MARK":
                stack.append(_MARK)
                continue
            if kind == "POP":  # pops the mark when the mark is on top
                if stack:
                    stack.pop()
                continue
            if kind == "POP_MARK":
                pop_to_mark()
                continue
            if kind == "DUP":
                stack.append(stack[-1] if stack and stack[-1] is not _MARK else _Obj())
                continue
            popped = pop_to_mark() if mark >= 0 else []
            below = [pop() for _ in range(nbelow)][::-1]
            if kind == "fill":  # the container is the first of ``below``; it stays
                target = below[0] if below else _Obj()
                parts = below[1:] + popped
                items += len(parts)
                for p in parts:
                    if p.depth >= target.depth:
                        target.depth = p.depth + 1
                depth = target.depth
                stack.append(target)
            else:
                parts = below + popped
                depth = max([p.depth for p in parts], default=0)
                if kind == "build":
                    items += len(parts)
                    depth += 1
                # REDUCE and kin: the result nests no deeper than its arguments
                for _ in range(nafter):
                    stack.append(_Obj(depth))
            if depth > max_depth:
                raise Refused(f"containers nested {depth} deep at opcode {count} "
                              f"({op.name}), more than "
                              f"{limits.over('pickle_depth', max_depth)}")
            if items > max_items:
                raise Refused(f"lists, tuples, sets and dicts with more than "
                              f"{limits.over('pickle_items', max_items)} at opcode {count}")
    except Refused:
        raise
    except Exception as e:  # noqa: BLE001 - genops on corrupt bytes: ValueError and kin
        raise Corrupt(f"{type(e).__name__}: {e}") from None


__all__ = ["Corrupt", "Refused", "scan"]
