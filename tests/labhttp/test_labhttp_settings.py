"""Settings from flags and LABHTTP_* env: defaults, precedence, and one-line errors."""

from __future__ import annotations

import pytest

from labhttp.settings import Listener, Settings, SettingsError, load_settings


def load(*argv: str, **env: str) -> Settings:
    return load_settings(argv, env)


def test_defaults_are_the_lessons_two_listeners_and_message() -> None:
    settings = load()
    assert settings.listeners == (Listener("api", "0.0.0.0", 8080), Listener("metrics", "0.0.0.0", 9090))
    assert settings.message == "Hello, Kubernetes and Istio!"
    assert settings.metrics_listener == "metrics"
    assert settings.shutdown_timeout == 10.0
    assert settings.shutdown_delay == 0.0
    assert settings.max_body_bytes == 1024 * 1024
    assert settings.log_format == "logfmt"
    assert settings.workers == 1
    assert settings.debug_routes is False


def test_every_flag_is_read() -> None:
    settings = load(
        "--listen=web=127.0.0.1:8000",
        "--listen=prom=[::1]:0",
        "--message=hi",
        "--metrics-listener=prom",
        "--shutdown-timeout=2.5",
        "--shutdown-delay=1",
        "--max-body-bytes=10",
        "--log-format=json",
        "--workers=3",
        "--debug-routes",
    )
    assert settings == Settings(
        listeners=(Listener("web", "127.0.0.1", 8000), Listener("prom", "::1", 0)),
        message="hi",
        metrics_listener="prom",
        shutdown_timeout=2.5,
        shutdown_delay=1.0,
        max_body_bytes=10,
        log_format="json",
        workers=3,
        debug_routes=True,
    )


def test_every_setting_is_read_from_the_environment() -> None:
    settings = load(
        LABHTTP_LISTEN="web=127.0.0.1:8000, prom=127.0.0.1:9000",
        LABHTTP_MESSAGE="from env",
        LABHTTP_METRICS_LISTENER="prom",
        LABHTTP_SHUTDOWN_TIMEOUT="3",
        LABHTTP_SHUTDOWN_DELAY="4",
        LABHTTP_MAX_BODY_BYTES="5",
        LABHTTP_LOG_FORMAT="json",
        LABHTTP_WORKERS="2",
    )
    assert settings.listeners == (Listener("web", "127.0.0.1", 8000), Listener("prom", "127.0.0.1", 9000))
    assert (settings.message, settings.metrics_listener) == ("from env", "prom")
    assert (settings.shutdown_timeout, settings.shutdown_delay) == (3.0, 4.0)
    assert (settings.max_body_bytes, settings.log_format, settings.workers) == (5, "json", 2)


def test_flags_win_over_the_environment() -> None:
    settings = load(
        "--listen=api=127.0.0.1:1",
        "--message=flag",
        LABHTTP_LISTEN="api=127.0.0.1:2,other=127.0.0.1:3",
        LABHTTP_MESSAGE="env",
    )
    assert settings.listeners == (Listener("api", "127.0.0.1", 1),)
    assert settings.message == "flag"


def test_an_empty_host_means_every_ipv4_interface_like_gos_colon_port() -> None:
    assert load("--listen=api=:8080").listeners == (Listener("api", "0.0.0.0", 8080),)


def test_without_a_listener_named_metrics_the_first_listener_serves_metrics() -> None:
    assert load("--listen=api=127.0.0.1:8080", "--listen=web=127.0.0.1:8081").metrics_listener == "api"


def test_port_zero_may_repeat_because_the_kernel_picks_distinct_ports() -> None:
    assert len(load("--listen=a=127.0.0.1:0", "--listen=b=127.0.0.1:0").listeners) == 2


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--listen=api"], "expected NAME=HOST:PORT"),
        (["--listen=api=127.0.0.1"], "expected NAME=HOST:PORT"),
        (["--listen=api=127.0.0.1:http"], "port must be a number"),
        (["--listen=api=127.0.0.1:65536"], "port must be a number"),
        (["--listen=API=127.0.0.1:80"], "listener name"),
        (["--listen=a-very-long-listener=127.0.0.1:80"], "listener name"),
        (["--listen=api=::1:80"], "brackets"),
        (["--listen=api=[nope]:80"], "not an IPv6 address"),
        (["--listen=api=127.0.0.1:80", "--listen=api=127.0.0.1:81"], "given twice"),
        (["--listen=api=127.0.0.1:80", "--listen=web=0.0.0.0:80"], "share port 80"),
        (["--metrics-listener=nope"], "not one of the listeners"),
        (["--shutdown-timeout=-1"], "expected seconds"),
        (["--max-body-bytes=0"], "at least 1"),
        (["--log-format=xml"], "expected one of logfmt, json"),
        (["--workers=many"], "whole number"),
        (["--no-such-flag"], "unrecognized arguments"),
    ],
)
def test_bad_flags_raise_one_line_errors(argv: list[str], message: str) -> None:
    with pytest.raises(SettingsError, match=message) as raised:
        load(*argv)
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"LABHTTP_LISTEN": "api=nowhere"}, "LABHTTP_LISTEN: .*expected NAME=HOST:PORT"),
        ({"LABHTTP_LISTEN": " , "}, "LABHTTP_LISTEN: expected at least one"),
        ({"LABHTTP_SHUTDOWN_TIMEOUT": "soon"}, "LABHTTP_SHUTDOWN_TIMEOUT: .*expected seconds"),
        ({"LABHTTP_LOG_FORMAT": "text"}, "LABHTTP_LOG_FORMAT"),
        ({"LABHTTP_WORKERS": "0"}, "LABHTTP_WORKERS"),
    ],
)
def test_bad_environment_values_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        load(**env)


def test_an_empty_variable_counts_as_unset() -> None:
    assert load(LABHTTP_LISTEN="").listeners == load().listeners


def test_an_empty_message_variable_is_an_empty_message() -> None:
    # A LabServer may ask for an empty body; the operator always sets the variable.
    assert load(LABHTTP_MESSAGE="").message == ""
    assert load().message == "Hello, Kubernetes and Istio!"


def test_settings_are_frozen() -> None:
    settings = load()
    with pytest.raises(AttributeError):
        settings.message = "changed"  # type: ignore[misc]
