"""The one table: every problem's mutants and right-but-different submissions (see __init__)."""
from . import p1, p2, p3, p4, p5, p6

TABLE = [*p1.CASES, *p2.CASES, *p3.CASES, *p4.CASES, *p5.CASES, *p6.CASES]
assert len({m.name for m in TABLE}) == len(TABLE), "mutant names must be unique"
