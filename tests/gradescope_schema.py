"""Gradescope's results.json format, as a JSON Schema, from its specification
(https://gradescope-autograders.readthedocs.io/en/latest/specs/#output-format)."""
VISIBILITY = {"enum": ["hidden", "after_due_date", "after_published", "visible"]}
FORMAT = {"enum": ["text", "html", "simple_format", "md", "ansi"]}

RESULTS_SCHEMA = {
    "type": "object",
    "required": ["tests", "execution_time", "stdout_visibility"],
    "properties": {
        "score": {"type": "number"},
        "execution_time": {"type": "integer", "minimum": 0},
        "output": {"type": "string"},
        "output_format": FORMAT,
        "visibility": VISIBILITY,
        "stdout_visibility": VISIBILITY,
        "tests": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["name", "score", "max_score", "status", "output", "visibility"],
                "properties": {
                    "name": {"type": "string", "pattern": r"^\[[a-z0-9]+\] "},
                    "number": {"type": "string"},
                    "score": {"type": "number", "minimum": 0},
                    "max_score": {"type": "number", "minimum": 0},
                    "status": {"enum": ["passed", "failed"]},
                    "output": {"type": "string"},
                    "output_format": FORMAT,
                    "visibility": VISIBILITY,
                    "tags": {"type": "array", "items": {"type": "string"}},
                },
            },
        },
    },
}


def validate_results(data: dict, *, rubric_titles: list[str] | None = None) -> None:
    """Raise if ``data`` is not valid Gradescope results, or lacks a row for a rubric test."""
    import jsonschema
    jsonschema.validate(data, RESULTS_SCHEMA)
    for row in data["tests"]:
        assert row["score"] <= row["max_score"] + 1e-9, row
    assert abs(sum(r["score"] for r in data["tests"]) - data["score"]) < 1e-6
    if rubric_titles is not None:
        names = [r["name"] for r in data["tests"]]
        missing = [t for t in rubric_titles if t not in names]
        assert not missing, f"rows missing for {missing}"
