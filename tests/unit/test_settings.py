"""labop.settings: defaults, LABOP_* variables, flags over variables, and refusing bad values."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from labop.__main__ import main
from labop.settings import OperatorSettings, SettingsError, election_namespace, env_name, from_env, parse_args
from labop.spec import DEFAULT_IMAGE


def test_the_defaults_are_two_workers_all_namespaces_and_both_ports_on() -> None:
    settings = OperatorSettings()
    assert settings.workers == 2
    assert settings.queue_size == 1000
    assert settings.resync_seconds == 300.0
    assert settings.default_image == DEFAULT_IMAGE
    assert settings.namespaces == ()
    assert settings.clusterwide
    assert (settings.metrics_port, settings.health_port) == (8080, 8081)
    assert settings.field_manager == "k8s-lab"


def test_an_empty_environment_gives_the_defaults() -> None:
    assert from_env({}) == OperatorSettings()


def test_no_flags_and_no_environment_give_the_defaults() -> None:
    assert parse_args([], {}) == OperatorSettings()


def test_every_setting_has_a_labop_variable_named_after_it() -> None:
    names = [env_name(f.name) for f in dataclasses.fields(OperatorSettings)]
    assert "LABOP_WORKERS" in names
    assert "LABOP_RESYNC_SECONDS" in names
    assert all(name.startswith("LABOP_") and name.isupper() for name in names)


def test_integer_variables_are_parsed() -> None:
    settings = from_env({"LABOP_WORKERS": "7", "LABOP_QUEUE_SIZE": "50", "LABOP_METRICS_PORT": "0"})
    assert (settings.workers, settings.queue_size, settings.metrics_port) == (7, 50, 0)


def test_float_variables_are_parsed_and_accept_integers() -> None:
    settings = from_env({"LABOP_RESYNC_SECONDS": "2.5", "LABOP_API_TIMEOUT": "10"})
    assert settings.resync_seconds == 2.5
    assert settings.api_timeout == 10.0
    assert isinstance(settings.api_timeout, float)


def test_the_namespaces_variable_is_a_comma_list_with_blanks_dropped() -> None:
    settings = from_env({"LABOP_NAMESPACES": " team-a, team-b ,,"})
    assert settings.namespaces == ("team-a", "team-b")
    assert not settings.clusterwide


def test_an_empty_namespaces_variable_means_every_namespace() -> None:
    assert from_env({"LABOP_NAMESPACES": ""}).clusterwide


def test_string_variables_are_taken_as_they_are() -> None:
    settings = from_env({"LABOP_DEFAULT_IMAGE": "example/lab:2", "LABOP_BIND_ADDRESS": "127.0.0.1"})
    assert (settings.default_image, settings.bind_address) == ("example/lab:2", "127.0.0.1")


def test_variables_without_the_prefix_are_ignored() -> None:
    assert from_env({"WORKERS": "9", "labop_workers": "9"}) == OperatorSettings()


def test_variables_apply_over_a_given_base() -> None:
    base = OperatorSettings(workers=5, queue_size=3)
    settings = from_env({"LABOP_QUEUE_SIZE": "9"}, base)
    assert (settings.workers, settings.queue_size) == (5, 9)


def test_a_flag_wins_over_its_variable() -> None:
    settings = parse_args(["--workers", "4"], {"LABOP_WORKERS": "9", "LABOP_QUEUE_SIZE": "20"})
    assert settings.workers == 4
    assert settings.queue_size == 20  # no flag: the variable holds


def test_flags_use_dashes_and_parse_like_variables() -> None:
    settings = parse_args(
        ["--resync-seconds", "0", "--namespaces", "a,b", "--health-port", "9000", "--default-image", "x/y:1"],
        {},
    )
    assert settings.resync_seconds == 0.0
    assert settings.namespaces == ("a", "b")
    assert settings.health_port == 9000
    assert settings.default_image == "x/y:1"


def test_a_variable_that_is_not_a_number_is_refused_by_its_name() -> None:
    with pytest.raises(SettingsError, match=r"LABOP_WORKERS='many'"):
        from_env({"LABOP_WORKERS": "many"})


def test_a_fractional_value_for_an_integer_variable_is_refused() -> None:
    with pytest.raises(SettingsError, match="LABOP_QUEUE_SIZE"):
        from_env({"LABOP_QUEUE_SIZE": "1.5"})


def test_a_float_variable_that_is_not_a_number_is_refused_by_its_name() -> None:
    with pytest.raises(SettingsError, match="LABOP_RESYNC_SECONDS"):
        from_env({"LABOP_RESYNC_SECONDS": "5m"})


def test_a_bad_flag_value_is_refused_by_the_flag_name() -> None:
    with pytest.raises(SettingsError, match=r"--queue-size='lots'"):
        parse_args(["--queue-size", "lots"], {})


@pytest.mark.parametrize(
    ("env", "field"),
    [
        ({"LABOP_WORKERS": "0"}, "workers"),
        ({"LABOP_QUEUE_SIZE": "0"}, "queue_size"),
        ({"LABOP_RESYNC_SECONDS": "-1"}, "resync_seconds"),
        ({"LABOP_METRICS_PORT": "65536"}, "metrics_port"),
        ({"LABOP_HEALTH_PORT": "-1"}, "health_port"),
        ({"LABOP_DEFAULT_IMAGE": ""}, "default_image"),
    ],
)
def test_an_out_of_range_variable_is_refused_naming_the_setting(env: dict[str, str], field: str) -> None:
    with pytest.raises(SettingsError, match=field):
        from_env(env)


def test_out_of_range_values_are_refused_when_built_directly_too() -> None:
    with pytest.raises(SettingsError, match="workers"):
        OperatorSettings(workers=0)


def test_a_bad_flag_wins_over_a_good_variable_and_is_refused() -> None:
    with pytest.raises(SettingsError, match="workers must be at least 1"):
        parse_args(["--workers", "0"], {"LABOP_WORKERS": "3"})


def test_a_bad_variable_is_refused_even_when_a_flag_overrides_it() -> None:
    # The environment is read first, as the flags' shown defaults come from it.
    with pytest.raises(SettingsError, match="LABOP_WORKERS"):
        parse_args(["--workers", "3"], {"LABOP_WORKERS": "x"})


def test_settings_are_frozen() -> None:
    settings = OperatorSettings()
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.workers = 3  # type: ignore[misc]


def test_python_m_labop_with_zero_workers_exits_2_with_the_reason(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LABOP_WORKERS", raising=False)
    assert main(["--workers", "0"]) == 2
    assert capsys.readouterr().err == "labop: workers must be at least 1\n"


def test_python_m_labop_with_a_bad_variable_exits_2_naming_it(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LABOP_QUEUE_SIZE", "big")
    assert main([]) == 2
    assert "LABOP_QUEUE_SIZE='big'" in capsys.readouterr().err


def test_python_m_labop_with_an_unknown_flag_exits_2_through_argparse(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited:
        parse_args(["--no-such-flag"], {})
    assert exited.value.code == 2
    assert "--no-such-flag" in capsys.readouterr().err


def test_help_lists_every_flag_with_its_variable(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_args(["--help"], {"LABOP_NAMESPACES": "a,b"})
    out = capsys.readouterr().out
    for f in dataclasses.fields(OperatorSettings):
        assert "--" + f.name.replace("_", "-") in out
        assert env_name(f.name) in out
    assert "'a,b'" in out  # the default shown is the environment's


def test_the_log_format_is_one_of_kopfs() -> None:
    assert OperatorSettings().log_format == "full"
    assert parse_args(["--log-format", "json"], {}).log_format == "json"
    assert from_env({"LABOP_LOG_FORMAT": "plain"}).log_format == "plain"
    with pytest.raises(SettingsError, match="log_format must be one of plain, full, json"):
        from_env({"LABOP_LOG_FORMAT": "logfmt"})


def test_leader_election_is_off_by_default_with_client_gos_timings() -> None:
    s = OperatorSettings()
    assert not s.leader_elect
    assert (s.lease_duration, s.renew_deadline, s.retry_period) == (15.0, 10.0, 2.0)


@pytest.mark.parametrize(("raw", "expected"), [("true", True), ("1", True), ("false", False), ("0", False)])
def test_the_leader_elect_variable_is_a_boolean(raw: str, expected: bool) -> None:
    assert from_env({"LABOP_LEADER_ELECT": raw}).leader_elect is expected


def test_a_leader_elect_variable_that_is_not_a_boolean_is_refused_by_its_name() -> None:
    with pytest.raises(SettingsError, match="LABOP_LEADER_ELECT"):
        from_env({"LABOP_LEADER_ELECT": "maybe"})


def test_the_leader_elect_flag_alone_means_true_and_takes_a_value_too() -> None:
    assert parse_args(["--leader-elect"], {}).leader_elect
    assert not parse_args(["--leader-elect=false"], {"LABOP_LEADER_ELECT": "true"}).leader_elect


def test_the_lease_timings_must_be_ordered() -> None:
    with pytest.raises(SettingsError, match="lease_duration > renew_deadline > retry_period"):
        from_env({"LABOP_LEASE_DURATION": "5", "LABOP_RENEW_DEADLINE": "6"})


def test_the_lease_namespace_is_the_setting_else_the_pods_else_default(tmp_path: Path) -> None:
    sa = tmp_path / "namespace"
    sa.write_text("k8s-lab-system\n")
    assert election_namespace(OperatorSettings(leader_election_namespace="x"), str(sa)) == "x"
    assert election_namespace(OperatorSettings(), str(sa)) == "k8s-lab-system"
    assert election_namespace(OperatorSettings(), str(tmp_path / "absent")) == "default"
