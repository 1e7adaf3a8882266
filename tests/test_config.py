"""Settings from flags and environment, and the CLI's handling of bad ones."""

from __future__ import annotations

import pytest

from oai2ollama.cli import build_parser, main, settings_from
from oai2ollama.config import Settings, SettingsError, parse_ollama_url


@pytest.mark.parametrize(
    ("value", "url"),
    [
        (None, "http://127.0.0.1:11434"),
        ("", "http://127.0.0.1:11434"),
        ("0.0.0.0", "http://127.0.0.1:11434"),
        ("0.0.0.0:11434", "http://127.0.0.1:11434"),
        (":9999", "http://127.0.0.1:9999"),
        ("gpu-box", "http://gpu-box:11434"),
        ("gpu-box:8080", "http://gpu-box:8080"),
        ("http://gpu-box", "http://gpu-box:80"),
        ("https://ollama.example.org", "https://ollama.example.org:443"),
        ("http://10.0.0.5:11434/", "http://10.0.0.5:11434"),
        ("https://host:8443/ollama", "https://host:8443/ollama"),
        ("[::1]:11434", "http://[::1]:11434"),
        ("::", "http://[::1]:11434"),
        ("[::]:5000", "http://[::1]:5000"),
        ("HTTP://Host:1", "http://host:1"),
    ],
)
def test_ollama_host_forms(value: str | None, url: str) -> None:
    assert parse_ollama_url(value) == url


@pytest.mark.parametrize("value", ["ftp://host", "host:99999", "host:port"])
def test_bad_ollama_urls(value: str) -> None:
    with pytest.raises(SettingsError):
        parse_ollama_url(value)


def parse(argv: list[str], env: dict[str, str] | None = None) -> Settings:
    return settings_from(build_parser().parse_args(argv), env or {})


def test_defaults() -> None:
    s = parse([])
    assert (s.host, s.port, s.ollama_url, s.api_keys) == (
        "127.0.0.1",
        11435,
        "http://127.0.0.1:11434",
        (),
    )
    assert s.base_url == "http://127.0.0.1:11435/v1"


def test_environment_and_flags_precedence() -> None:
    env = {
        "OLLAMA_HOST": "0.0.0.0:1234",
        "OAI2OLLAMA_API_KEY": "k",
        "OAI2OLLAMA_PORT": "9000",
        "OAI2OLLAMA_LOG_LEVEL": "DEBUG",
    }
    s = parse([], env)
    assert (s.ollama_url, s.api_keys, s.port, s.log_level) == (
        "http://127.0.0.1:1234",
        ("k",),
        9000,
        "debug",
    )
    s = parse(["--ollama-url", "http://other:1", "--api-key", "f", "--port", "1"], env)
    assert (s.ollama_url, s.api_keys, s.port) == ("http://other:1", ("f",), 1)


def test_base_url_for_wildcard_and_v6_hosts() -> None:
    assert (
        Settings(host="0.0.0.0", port=1, allow_unauthenticated=True).base_url
        == "http://127.0.0.1:1/v1"
    )
    assert Settings(host="::1", port=1).base_url == "http://[::1]:1/v1"


@pytest.mark.parametrize(
    ("argv", "env", "needle"),
    [
        (["--port", "http"], {}, "not a port number"),
        (["--port", "70000"], {}, "out of range"),
        (["--idle-timeout", "-1"], {}, "zero or more"),
        (["--bogus"], {}, "unrecognized arguments"),
        ([], {"OAI2OLLAMA_PORT": "abc"}, "OAI2OLLAMA_PORT"),
        ([], {"OLLAMA_HOST": "ftp://x"}, "OLLAMA_HOST"),
        ([], {"OAI2OLLAMA_LOG_LEVEL": "loud"}, "OAI2OLLAMA_LOG_LEVEL"),
    ],
)
def test_bad_settings_exit_2_with_one_line(
    argv: list[str], env: dict[str, str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    err = refused(argv, env, capsys)
    assert needle in err
    assert err.startswith("oai2ollama: error: ")


def refused(argv: list[str], env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> str:
    """The one line the program exits with (status 2) for these settings."""
    with pytest.raises(SystemExit) as info:
        main(argv, env)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    return err


def test_version_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"], {})
    assert info.value.code == 0
    assert capsys.readouterr().out.startswith("oai2ollama ")
    with pytest.raises(SystemExit):
        main(["--help"], {})
    out = capsys.readouterr().out
    for flag in (
        "--host",
        "--port",
        "--ollama-url",
        "--api-key",
        "--log-level",
        "--idle-timeout",
        "--first-byte-timeout",
    ):
        assert flag in out
    assert "OLLAMA_HOST" in out


# ---- settings that used to be accepted silently but wrong ----------------------------------


@pytest.mark.parametrize(
    ("argv", "env", "needle"),
    [
        (["--api-key", ""], {}, "--api-key"),
        (["--api-key", "k", "--api-key", " "], {}, "--api-key"),
        ([], {"OAI2OLLAMA_API_KEY": ""}, "OAI2OLLAMA_API_KEY"),
        ([], {"OAI2OLLAMA_API_KEY": " , "}, "OAI2OLLAMA_API_KEY"),
        (["--keep-alive", "forever"], {}, "--keep-alive"),
        (["--keep-alive", "5 minutes"], {}, "--keep-alive"),
        (["--keep-alive", "inf"], {}, "--keep-alive"),
        (["--trusted-proxy", "10.0.0.0/33"], {}, "--trusted-proxy"),
        ([], {"OAI2OLLAMA_TRUSTED_PROXY": "10.0.0.1,proxy"}, "OAI2OLLAMA_TRUSTED_PROXY"),
        ([], {"OAI2OLLAMA_CLIENT_BODY_TIMEOUT": "soon"}, "OAI2OLLAMA_CLIENT_BODY_TIMEOUT"),
        (["--client-idle-timeout", "-1"], {}, "--client-idle-timeout"),
    ],
)
def test_settings_that_would_be_wrong_are_refused(
    argv: list[str], env: dict[str, str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert needle in refused(argv, env, capsys)


@pytest.mark.parametrize(
    ("text", "sent"),
    [
        ("30m", "30m"),
        ("1h30m", "1h30m"),
        ("1.5h", "1.5h"),
        ("300ms", "300ms"),
        ("0", 0),
        ("-1", -1),
        ("600", 600),
        ("2.5", 2.5),
        ("-1m", "-1m"),
    ],
)
def test_keep_alive_takes_go_durations_and_numbers(text: str, sent: object) -> None:
    settings = settings_from(build_parser().parse_args([f"--keep-alive={text}"]), {})
    assert settings.policy.defaults.keep_alive == sent


def test_keep_alive_in_the_config_file_is_checked_too(tmp_path: object) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / "c.toml"
    path.write_text('[defaults]\nkeep_alive = "forever"\n')
    with pytest.raises(SettingsError, match="keep_alive"):
        settings_from(build_parser().parse_args(["--config", str(path)]), {})


def test_zero_image_timeout_means_no_limit_like_the_others() -> None:
    parse = build_parser().parse_args
    assert settings_from(parse(["--image-timeout", "0"]), {}).image_timeout is None
    assert settings_from(parse(["--request-timeout", "0"]), {}).request_timeout is None
    assert settings_from(parse([]), {}).image_timeout == 10


def test_client_timeouts_and_trusted_proxies_from_flags_and_environment() -> None:
    parse = build_parser().parse_args
    env = {
        "OAI2OLLAMA_CLIENT_HEADER_TIMEOUT": "3",
        "OAI2OLLAMA_CLIENT_BODY_TIMEOUT": "0",
        "OAI2OLLAMA_TRUSTED_PROXY": "10.0.0.0/8, ::1",
    }
    s = settings_from(parse(["--client-idle-timeout", "5"]), env)
    assert (s.client_header_timeout, s.client_body_timeout, s.client_idle_timeout) == (3, 0, 5)
    assert s.trusted_proxies == ("10.0.0.0/8", "::1")
    s = settings_from(
        parse(["--trusted-proxy", "192.168.0.1", "--client-header-timeout", "1"]), env
    )
    assert s.trusted_proxies == ("192.168.0.1",)
    assert s.client_header_timeout == 1
    s = settings_from(parse([]), {})
    assert (s.client_header_timeout, s.client_body_timeout, s.client_idle_timeout) == (10, 60, 75)
    assert s.trusted_proxies == ()


def test_start_up_line_names_the_address_really_bound() -> None:
    from oai2ollama.cli import listening_message

    line = listening_message(Settings(host="0.0.0.0", port=8000, api_keys=("k",)))
    assert "listening on 0.0.0.0:8000" in line
    assert "http://127.0.0.1:8000/v1" in line  # where a client on this machine connects
    assert "listening on [::]:8000" in listening_message(Settings(host="::", port=8000))


def test_every_flag_the_readme_names_exists() -> None:
    import re
    from pathlib import Path

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    # Every section but the recipes, whose flags belong to the clients they set up.
    sections = re.split(r"^(?=## )", readme, flags=re.M)
    ours = "".join(part for part in sections if not part.startswith("## Recipes"))
    known = {o for a in build_parser()._actions for o in a.option_strings}
    named = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]+", ours))
    named -= {"--readme", "--markdown"}  # the settings table's own tool, not the server's
    assert named - known == set()


@pytest.mark.parametrize(
    ("flag", "env", "field", "default"),
    [
        ("--max-line-size", "OAI2OLLAMA_MAX_LINE_SIZE", "max_line_size", 16 * 1024 * 1024),
        ("--max-image-urls", "OAI2OLLAMA_MAX_IMAGE_URLS", "max_image_urls", 16),
    ],
)
def test_limit_settings_from_flag_and_environment(
    flag: str, env: str, field: str, default: int
) -> None:
    parse = build_parser().parse_args
    assert getattr(settings_from(parse([]), {}), field) == default
    assert getattr(settings_from(parse([]), {env: "4096"}), field) == 4096
    assert getattr(settings_from(parse([flag, "8192"]), {env: "4096"}), field) == 8192
    with pytest.raises(SettingsError, match=env):
        settings_from(parse([]), {env: "lots"})
    with pytest.raises(SystemExit):
        parse([flag, "-1"])


def test_ollama_face_settings_from_flags_and_environment() -> None:
    s = parse([])
    assert (s.open_discovery, s.allow_model_management) == (False, False)
    s = parse(["--open-discovery", "--allow-model-management"])
    assert (s.open_discovery, s.allow_model_management) == (True, True)
    env = {"OAI2OLLAMA_OPEN_DISCOVERY": "1", "OAI2OLLAMA_ALLOW_MODEL_MANAGEMENT": "true"}
    s = parse([], env)
    assert (s.open_discovery, s.allow_model_management) == (True, True)
    s = parse([], {"OAI2OLLAMA_OPEN_DISCOVERY": "0", "OAI2OLLAMA_ALLOW_MODEL_MANAGEMENT": ""})
    assert (s.open_discovery, s.allow_model_management) == (False, False)
