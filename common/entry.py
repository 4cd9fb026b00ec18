"""``python -m <component>``: the part every component's entry point shares.

Each entry point parses the same flags (``--help`` with the knobs it reads as epilog,
``--config FILE``), loads :class:`~common.config.Settings` once, refuses a bad
configuration with exit code 2 and one line naming the knob (no traceback: a
misconfigured container must say why it stopped), configures logging, and only then
imports and runs the component, so that module-level loggers of the component see the
configured handlers. A component's ``__main__`` says only what differs: its name, its
description, the knobs it reads and the function that serves.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from common.config import ConfigError, Settings, help_epilog, load_settings
from common.logs import configure_logging


@dataclass(frozen=True, slots=True)
class Component:
    """What ``python -m <name>`` says about itself."""

    name: str  # the package: ``python -m <name>``, and the prefix of configuration errors
    description: str  # the paragraph of ``--help``
    knob_prefixes: tuple[str, ...]  # environment names listed in ``--help`` start with one of these
    #: Adds the component's own flags (the ingest's ``--check``); its ``__main__`` reads them with
    #: :func:`parse_args` to choose the ``serve`` it hands to :func:`main`.
    flags: Callable[[argparse.ArgumentParser], None] | None = None


def parse_args(component: Component, argv: Sequence[str] | None = None, *,
               prog: str | None = None) -> argparse.Namespace:
    """The flags every component takes; ``--help`` lists the knobs the component reads.

    ``prog`` is the name the user typed when it is not ``python -m <name>`` (an installed command).
    """
    parser = argparse.ArgumentParser(
        prog=prog or f"python -m {component.name}",
        description=component.description,
        epilog=help_epilog(component.knob_prefixes),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", metavar="FILE", help="YAML file of knobs (environment variables win)")
    if component.flags is not None:
        component.flags(parser)
    return parser.parse_args(argv)


def main(component: Component, serve: Callable[[Settings], int], argv: Sequence[str] | None = None,
         *, check: Callable[[Settings], None] | None = None, prog: str | None = None) -> int:
    """Exit code of the component: 2 on a bad configuration, else whatever ``serve`` returns.

    ``check`` may raise :class:`ConfigError` for what :func:`load_settings` cannot know
    (e.g. a URL no client accepts); ``serve`` runs after logging is configured and should
    import the component's modules itself, for the reason in the module docstring.
    """
    args = parse_args(component, argv, prog=prog)
    try:
        settings = load_settings(config_file=args.config)
        if check is not None:
            check(settings)
    except ConfigError as exc:
        print(f"{component.name}: configuration error: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format)
    return serve(settings)
