"""Print the configuration table (Markdown) from common/config.py, for README.md.

Run ``python -m scripts.knobs`` and paste its output into README.md's configuration
section; tests/test_config.py fails when a knob is missing from the README.
"""

from __future__ import annotations

from common.config import knob_table


def markdown() -> str:
    lines = ["| variable | default | what and why |", "|---|---|---|"]
    for env, default, doc in knob_table():
        lines.append(f"| `{env}` | `{default}` | {doc} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown())
