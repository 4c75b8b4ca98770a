from click.testing import CliRunner

from harepl.cli.main import cli


def test_harepl_help_lists_built_subcommands() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0, result.output
    assert "harepl" in result.output.lower()


def test_unknown_subcommand_is_one_clear_error() -> None:
    result = CliRunner().invoke(cli, ["no-such-command"])
    assert result.exit_code == 2
    assert "No such command" in result.output
