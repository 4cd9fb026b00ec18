"""The curl examples of docs/api.md, run as written against the real stack.

A reader pastes them against ``scripts/run``: the simulator, the ingest filling Redis, the API.
Examples naming a fixed expiry or symbol went stale the day it was delivered (and never matched
the simulator's calendar), answering ``count 0`` or ``unknown_symbol``; so every example is run
here with bash, curl and jq, only the documented ``localhost:5001`` swapped for the test API.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from tests.fixtures_components import IngestHandle
from tests.fixtures_readers import ServiceHandle, api_factory
from tests.fixtures_simulator import SimulatorHandle
from tests.servers import RedisServer, repo_root

__all__ = ["api_factory"]

DOC = repo_root() / "docs" / "api.md"
DOC_ORIGIN = "localhost:5001"
_ASSIGNMENT = re.compile(r"^(?P<name>[A-Z_][A-Z0-9_]*)=\$\(.*\)$")
#: The curl command of an example line: everything before a pipe into jq.
_CURL = re.compile(r"^(?P<curl>curl\s.*?)(?:\s+\|\s+jq\s.*)?$")


@dataclass(frozen=True)
class Examples:
    """The shell lines of the doc's ``sh`` blocks, in order: variable assignments and curls."""

    lines: list[str]

    @classmethod
    def from_doc(cls, text: str) -> Examples:
        blocks = re.findall(r"^```sh\n(.*?)^```", text, flags=re.S | re.M)
        # Comments go (a trailing "# e.g. 27DEC26" is an illustration, not a value used).
        lines = [re.sub(r"(^|\s+)#\s.*$", "", line.strip())
                 for block in blocks for line in block.splitlines()]
        return cls([line for line in lines if line])

    def assignments_before(self, index: int) -> list[str]:
        return [line for line in self.lines[:index] if _ASSIGNMENT.match(line)]

    @property
    def variables(self) -> list[str]:
        return [m["name"] for line in self.lines if (m := _ASSIGNMENT.match(line))]

    @property
    def curls(self) -> list[tuple[int, str]]:
        return [(i, line) for i, line in enumerate(self.lines) if line.startswith("curl ")]


def bash(lines: list[str], origin: str) -> subprocess.CompletedProcess[str]:
    """Run ``lines`` as one bash script with the doc's host:port replaced by ``origin``."""
    script = "\n".join(["set -euo pipefail", *(line.replace(DOC_ORIGIN, origin) for line in lines)])
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=30, check=False)


def test_the_examples_are_only_assignments_and_curls_of_the_documented_api() -> None:
    examples = Examples.from_doc(DOC.read_text())
    assert examples.curls, "docs/api.md has no curl example"
    for line in examples.lines:
        assert _ASSIGNMENT.match(line) or _CURL.match(line), f"an example the test cannot check: {line}"
    for _, line in examples.curls:
        assert DOC_ORIGIN in line, line
    assert not re.search(r"\d{1,2}[A-Z]{3}\d{2}", "\n".join(examples.lines)), \
        "an example names a fixed expiry: it stops working once that expiry is delivered"


@pytest.mark.slow
@pytest.mark.skipif(not (shutil.which("curl") and shutil.which("jq")), reason="needs curl and jq")
def test_every_curl_example_answers_200_with_data_from_the_simulator_through_the_ingest(
    redis_server: RedisServer, simulator: SimulatorHandle, ingest_factory: Callable[..., IngestHandle],
    api_factory: Callable[..., ServiceHandle],
) -> None:
    listed = simulator.instruments()
    ingest = ingest_factory(redis_url=redis_server.url, simulator=simulator)
    ingest.wait_for_data(symbols=sum(len(s) for s in listed.values()), timeout=60)
    api = api_factory(redis_url=redis_server.url)
    origin = api.url.removeprefix("http://")
    examples = Examples.from_doc(DOC.read_text())

    values = bash([*examples.assignments_before(len(examples.lines)),
                   *(f'printf "%s=%s\\n" {v} "${v}"' for v in examples.variables)], origin)
    assert values.returncode == 0, values.stderr
    for line in values.stdout.splitlines():
        name, _, value = line.partition("=")
        assert value not in ("", "null"), f"{name} derived nothing: {values.stdout}"

    for index, line in examples.curls:
        setup = examples.assignments_before(index)
        # As pasted (jq included): succeeds and prints something other than null.
        pasted = bash([*setup, line], origin)
        assert pasted.returncode == 0, (line, pasted.stderr)
        assert pasted.stdout.strip(), line
        assert "null" not in pasted.stdout.split(), (line, pasted.stdout)
        # The curl alone: HTTP 200 with data.
        match = _CURL.match(line)
        assert match is not None, line
        raw = bash([*setup, match["curl"] + " -w '\\n%{http_code}'"], origin)
        assert raw.returncode == 0, (line, raw.stderr)
        body, _, status = raw.stdout.rpartition("\n")
        assert status == "200", (line, raw.stdout[-500:])
        if " -sI " in f" {match['curl']} ":
            headers = body.lower()
            assert "x-cache:" in headers, (line, body)
            assert "age:" in headers, (line, body)
            continue
        answer = json.loads(body)
        if "options" in answer:
            assert answer["count"] > 0, (line, {k: v for k, v in answer.items() if k != "options"})
            assert len(answer["options"]) == answer["count"]
        else:
            assert answer["option"]["symbol"] in listed[answer["coin"]], (line, answer)
            assert answer["option"]["markPrice"], (line, answer)
