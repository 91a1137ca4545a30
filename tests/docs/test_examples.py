"""Every example of README.md, CONTRIBUTING.md and docs/ holds: requests parse against the
real model and configuration, YAML loads as configuration, commands run against the demo
layout (or, where they need AWS, Docker or a service, are validated). docgen/examples.py
says how each kind is checked; the session's summary prints how many were."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from docgen import examples

PAGES = [
    pytest.param(page, marks=[pytest.mark.slow] if examples.needs_ray(page) else [])
    for page in examples.pages()
    if examples.examples_of(page)
]


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_every_example_of_the_page_holds(page, tmp_path, record_property):
    workspace = examples.Workspace(tmp_path)
    found = examples.examples_of(page)
    for example in found:
        examples.check(example, workspace)
    record_property("examples", json.dumps(Counter(example.language for example in found)))


def test_every_block_is_an_example_or_declared_output():
    """A block in another language (or none) would go unchecked: examples_of refuses it."""
    found = [example for page in examples.pages() for example in examples.examples_of(page)]
    assert {example.language for example in found} == set(examples.LANGUAGES)
    assert len(found) >= 40


def test_a_broken_example_fails(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        '```json\n{"name": "MotoGP", "input_image_size": [480]}\n```\n\n'
        "<!-- check: validate (needs nothing) -->\n"
        "```bash\nmotoray run --no-such-flag x.json\n```\n"
        "```yaml\nsources: {MotoGP: {uri: ./x, extension: [.jpg]}}\n```\n"
    )
    workspace = examples.Workspace(tmp_path)
    found = examples.examples_of(page)
    for example, reason in zip(found, ("input_image_size", "no-such-flag", "extension")):
        with pytest.raises(AssertionError, match=reason):
            examples.check(example, workspace)
