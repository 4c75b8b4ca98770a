import click
from click.testing import CliRunner

from harepl.cli.ha_manager import cli as ha_manager_cli
from harepl.cli.main import SUBCOMMANDS, cli


def test_harepl_help_lists_built_subcommands() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0, result.output
    assert "harepl" in result.output.lower()


def test_unknown_subcommand_is_one_clear_error() -> None:
    result = CliRunner().invoke(cli, ["no-such-command"])
    assert result.exit_code == 2
    assert "No such command" in result.output


def _commands(group: click.Group, prefix: tuple[str, ...]) -> list[tuple[str, ...]]:
    ctx = click.Context(group)
    found = []
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None, f"{' '.join((*prefix, name))} is listed but does not load"
        found.append((*prefix, name))
        if isinstance(command, click.Group):
            found += _commands(command, (*prefix, name))
    return found


def test_every_listed_subcommand_imports_and_shows_help() -> None:
    """No hidden subcommands: each name `harepl` lists loads (a missing module is an
    error, not a silently absent command) and answers --help."""
    assert sorted(cli.list_commands(click.Context(cli))) == sorted(SUBCOMMANDS)
    for path in [*_commands(cli, ()), *(("ha-manager", *p) for p in _commands(ha_manager_cli, ()))]:
        group, args = (ha_manager_cli, path[1:]) if path[0] == "ha-manager" else (cli, path)
        result = CliRunner().invoke(group, [*args, "--help"])
        assert result.exit_code == 0, (path, result.output)
        assert "Usage:" in result.output, path
