"""bridge.config: the YAML schema, its error messages, and secrets kept secret."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError

from bridge.config import (
    PROVIDERS,
    AlertsConfig,
    BridgeConfig,
    CadenceConfig,
    CommandRule,
    CommandsConfig,
    FleetizeAccount,
    MetrotecAccount,
    MqttConfig,
    QuotaConfig,
    SamsaraAccount,
    StoreConfig,
    TelemaxAccount,
    TlsConfig,
    TracksafeAccount,
    WebhookAccountConfig,
    WebhooksConfig,
    load_config,
    parse_config,
)
from bridge.errors import ConfigError
from bridge.providers.samsara import BASE_URLS, SamsaraSettings

EXAMPLE = Path(__file__).resolve().parents[2] / "config.example.yaml"
SECRET = "s3cr3t-T0KEN-value"

MINIMAL = """\
accounts:
  - provider: samsara
    id: demo
    token: abc
"""


def yaml_text(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


def line_of(text: str, needle: str, occurrence: int = 1) -> int:
    """The 1-based line of the n-th line containing `needle`."""
    hits = [n for n, line in enumerate(text.splitlines(), start=1) if needle in line]
    return hits[occurrence - 1]


def problems_of(text: str, *, source: str = "<string>", base_dir: Path | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, source=source, base_dir=base_dir)
    assert str(caught.value) == "\n".join(caught.value.problems)
    return caught.value.problems


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# --- the example -----------------------------------------------------------------------


def test_example_config_loads_and_targets_the_simulator(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for variable in (
        "SAMSARA_TOKEN",
        "FLEETIZE_TOKEN",
        "TELEMAX_API_KEY",
        "METROTEC_USERNAME",
        "METROTEC_PASSWORD",
        "TRACKSAFE365_API_KEY",
    ):
        monkeypatch.delenv(variable, raising=False)
    config = load_config(EXAMPLE)

    assert config.mqtt.host == "localhost"
    assert config.mqtt.port == 1883
    assert config.mqtt.tls is None
    assert config.store.path == EXAMPLE.parent / "fleet-bridge.sqlite"
    samsara, fleetize, telemax, metrotec, tracksafe365 = config.accounts
    assert isinstance(samsara, SamsaraAccount)
    assert samsara.id == "demo-samsara"
    settings = samsara.provider_settings()
    assert settings.base_url == "http://127.0.0.1:8765/samsara"
    assert settings.token == "demo-samsara-token"
    # `fleet-bridge simulate --port 8765` serves every provider.
    assert isinstance(fleetize, FleetizeAccount)
    assert fleetize.provider_settings().base_url == "http://127.0.0.1:8765/fleetize/v2"
    assert isinstance(telemax, TelemaxAccount)
    assert telemax.provider_settings().base_url == "http://127.0.0.1:8765/telemax"
    assert isinstance(metrotec, MetrotecAccount)
    assert metrotec.provider_settings().base_url == "http://127.0.0.1:8765/metrotec/api"
    assert isinstance(tracksafe365, TracksafeAccount)
    assert tracksafe365.provider_settings().base_url == "http://127.0.0.1:8765/tracksafe365/v2"
    assert config.secrets() == [
        "demo-webhook-secret",
        "demo-samsara-token",
        "demo-fleetize-token",
        "demo-telemax-key",
        "demo-metrotec-password",
        "ts365_live_demo",
    ]


def test_example_config_takes_the_token_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SAMSARA_TOKEN", "from-env")
    assert load_config(EXAMPLE).accounts[0].provider_settings().token == "from-env"


@pytest.mark.parametrize(
    "model",
    [
        BridgeConfig,
        MqttConfig,
        TlsConfig,
        StoreConfig,
        SamsaraAccount,
        FleetizeAccount,
        TelemaxAccount,
        MetrotecAccount,
        TracksafeAccount,
        QuotaConfig,
        CadenceConfig,
        CommandsConfig,
        CommandRule,
        AlertsConfig,
        WebhooksConfig,
        WebhookAccountConfig,
    ],
)
def test_example_config_documents_every_option(model: type[BaseModel]) -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    for option in model.model_fields:
        assert f"{option}:" in text, f"{model.__name__}.{option} is not in the example"


# --- defaults and happy paths -----------------------------------------------------------


def test_minimal_config_takes_the_documented_defaults(tmp_path: Path) -> None:
    config = parse_config(MINIMAL, base_dir=tmp_path)
    mqtt = config.mqtt
    assert (mqtt.host, mqtt.port, mqtt.client_id, mqtt.keepalive) == (
        "localhost",
        1883,
        "fleet-bridge",
        60,
    )
    assert (mqtt.base_topic, mqtt.discovery, mqtt.discovery_prefix, mqtt.qos) == (
        "fleet",
        True,
        "homeassistant",
        1,
    )
    assert mqtt.tls is None
    assert mqtt.username is None
    assert mqtt.password is None
    assert config.log_level == "info"
    assert config.store.path == tmp_path / "fleet-bridge.sqlite"
    account = config.accounts[0]
    assert isinstance(account, SamsaraAccount)
    assert account.region == "us"
    assert (account.poll_interval, account.vehicle_list_interval) == (10, 3600)
    assert (account.offline_after, account.request_timeout) == (3600, 30)


def test_empty_sections_mean_defaults(tmp_path: Path) -> None:
    config = parse_config("mqtt:\nstore:\n" + MINIMAL, base_dir=tmp_path)
    assert config.mqtt == MqttConfig()
    assert config.store.path == tmp_path / "fleet-bridge.sqlite"


def test_provider_settings_use_the_region_unless_base_url_is_given() -> None:
    eu = parse_config(MINIMAL + "    region: eu\n    api_version: '2024-05-01'\n")
    assert eu.accounts[0].provider_settings() == SamsaraSettings(
        token="abc", base_url=BASE_URLS["eu"], api_version="2024-05-01"
    )
    override = parse_config(
        MINIMAL + "    region: eu\n    base_url: http://127.0.0.1:8765/samsara\n"
        "    request_timeout: 12.5\n"
    )
    settings = override.accounts[0].provider_settings()
    assert settings.base_url == "http://127.0.0.1:8765/samsara"
    assert settings.request_timeout == 12.5


def test_config_is_frozen() -> None:
    config = parse_config(MINIMAL)
    with pytest.raises(ValidationError):
        config.log_level = "debug"


def test_providers_are_listed() -> None:
    assert PROVIDERS == ("samsara", "fleetize", "telemax", "metrotec", "tracksafe365")


# --- error messages --------------------------------------------------------------------


def test_missing_token_names_the_path_and_the_account_line() -> None:
    text = yaml_text(
        """
        mqtt:
          host: broker
        accounts:
          - provider: samsara
            id: demo
        """
    )
    assert problems_of(text) == [
        f"accounts[0].token (line {line_of(text, '- provider')}): field required"
    ]


def test_missing_accounts_is_reported_at_the_top() -> None:
    assert problems_of("# the broker\nlog_level: info\n") == ["accounts (line 2): field required"]


def test_empty_accounts_list() -> None:
    assert problems_of("accounts: []\n") == ["accounts (line 1): at least one account is required"]


@pytest.mark.parametrize(
    ("option", "value", "reason"),
    [
        ("port", "0", "must be greater than or equal to 1"),
        ("port", "65536", "must be less than or equal to 65535"),
        ("port", "http", "must be a valid integer, unable to parse string as an integer"),
        ("keepalive", "4", "must be greater than or equal to 5"),
        ("keepalive", "3601", "must be less than or equal to 3600"),
        ("qos", "2", "must be 0 or 1"),
        ("host", "''", "must not be empty"),
        ("tls", "maybe", "must be true, false or a mapping of TLS options"),
    ],
)
def test_bad_mqtt_values(option: str, value: str, reason: str) -> None:
    text = f"mqtt:\n  {option}: {value}\n" + MINIMAL
    assert problems_of(text) == [f"mqtt.{option} (line 2): {reason}"]


@pytest.mark.parametrize(
    ("topic", "reason"),
    [
        ("''", "must not be empty"),
        ("fleet/+", "must not contain the MQTT wildcards '+' or '#'"),
        ("fleet/#", "must not contain the MQTT wildcards '+' or '#'"),
        ("/fleet", "must not start or end with '/'"),
        ("fleet/", "must not start or end with '/'"),
        ("a//b", "must not contain empty topic levels ('//')"),
    ],
)
@pytest.mark.parametrize("option", ["base_topic", "discovery_prefix"])
def test_bad_topics(option: str, topic: str, reason: str) -> None:
    text = f"mqtt:\n  {option}: {topic}\n" + MINIMAL
    assert problems_of(text) == [f"mqtt.{option} (line 2): {reason}"]


def test_nested_topics_are_fine() -> None:
    config = parse_config("mqtt:\n  base_topic: site/fleet\n" + MINIMAL)
    assert config.mqtt.base_topic == "site/fleet"


@pytest.mark.parametrize(
    ("option", "value", "reason"),
    [
        ("poll_interval", "4.9", "must be greater than or equal to 5"),
        ("vehicle_list_interval", "59", "must be greater than or equal to 60"),
        ("offline_after", "30", "must be greater than or equal to 60"),
        ("request_timeout", "0", "must be greater than 0"),
        ("request_timeout", "121", "must be less than or equal to 120"),
        ("region", "mars", "must be 'us' or 'eu'"),
        ("base_url", "ftp://example.com", "must be an http:// or https:// URL"),
        ("base_url", "example.com", "must be an http:// or https:// URL"),
    ],
)
def test_bad_account_values(option: str, value: str, reason: str) -> None:
    text = MINIMAL + f"    {option}: {value}\n"
    assert problems_of(text) == [f"accounts[0].{option} (line 5): {reason}"]


def test_unknown_options_are_named() -> None:
    text = yaml_text(
        """
        mqtt:
          prot: 1883
        logging: debug
        accounts:
          - provider: samsara
            id: demo
            token: abc
            poll_intervall: 30
        """
    )
    assert problems_of(text) == [
        "mqtt.prot (line 2): unknown option",
        "logging (line 3): unknown option",
        "accounts[0].poll_intervall (line 8): unknown option",
    ]


def test_unknown_provider() -> None:
    text = "accounts:\n  - provider: foo\n    id: demo\n    token: abc\n"
    assert problems_of(text) == [
        "accounts[0].provider (line 2): unknown provider 'foo' "
        "(expected one of: samsara, fleetize, telemax, metrotec, tracksafe365)"
    ]


def test_missing_provider() -> None:
    text = "accounts:\n  - id: demo\n    token: abc\n"
    assert problems_of(text) == ["accounts[0].provider (line 2): field required"]


def test_an_account_that_is_not_a_mapping() -> None:
    assert problems_of("accounts:\n  - samsara\n") == [
        "accounts[0] (line 2): must be a mapping of account options"
    ]


@pytest.mark.parametrize("account_id", ["Demo", "-demo", "demo fleet", "a" * 65, "''"])
def test_account_id_rules_are_explained(account_id: str) -> None:
    text = f"accounts:\n  - provider: samsara\n    id: {account_id}\n    token: abc\n"
    (problem,) = problems_of(text)
    assert problem.startswith("accounts[0].id (line 3): must be 1 to 64 characters: ")
    assert "lower-case letters a-z, digits, '_' or '-'" in problem


def test_reserved_account_id() -> None:
    text = "accounts:\n  - provider: samsara\n    id: bridge\n    token: abc\n"
    assert problems_of(text) == [
        "accounts[0].id (line 3): 'bridge' is reserved for the bridge's own topics"
    ]


def test_every_problem_is_reported_at_once() -> None:
    text = yaml_text(
        """
        mqtt:
          port: 70000
        accounts:
          - provider: samsara
            id: fleet
            token: abc
          - provider: samsara
            id: fleet
          - provider: samsara
            id: fleet
            token: def
          - provider: samsara
            id: bridge
            token: ghi
        """
    )
    assert problems_of(text) == [
        "mqtt.port (line 2): must be less than or equal to 65535",
        "accounts[1].token (line 7): field required",
        "accounts[1].id (line 8): duplicate account id 'fleet' (also used by accounts[0])",
        "accounts[2].id (line 10): duplicate account id 'fleet' (also used by accounts[0])",
        "accounts[3].id (line 13): 'bridge' is reserved for the bridge's own topics",
    ]


def test_duplicate_ids_are_rejected_for_configs_built_in_python() -> None:
    account = {"provider": "samsara", "id": "fleet", "token": "abc"}
    with pytest.raises(ValidationError, match=r"duplicate account id 'fleet'"):
        BridgeConfig.model_validate({"accounts": [account, account]})


def test_option_given_twice() -> None:
    text = "mqtt:\n  port: 1883\n  port: 1884\n" + MINIMAL
    assert problems_of(text) == ["mqtt.port (line 3): option given twice (also on line 2)"]


def test_yaml_syntax_error_names_line_and_column() -> None:
    text = "mqtt:\n  host: broker\n port: 1883\naccounts: []\n"
    (problem,) = problems_of(text, source="bridge.yaml")
    assert problem.startswith("bridge.yaml (line 3, column 2): invalid YAML: ")


def test_yaml_syntax_error_does_not_quote_the_line() -> None:
    text = f'accounts:\n  - token: "{SECRET}\n'
    (problem,) = problems_of(text)
    assert "invalid YAML" in problem
    assert SECRET not in problem


@pytest.mark.parametrize("text", ["", "\n", "# only a comment\n", "---\n"])
def test_empty_config(text: str) -> None:
    assert problems_of(text, source="c.yaml") == [
        "c.yaml: the configuration is empty; it needs at least an 'accounts' list"
    ]


@pytest.mark.parametrize(("text", "kind"), [("- a\n", "a list"), ("hello\n", "a string")])
def test_top_level_must_be_a_mapping(text: str, kind: str) -> None:
    (problem,) = problems_of(text, source="c.yaml")
    assert problem.startswith("c.yaml (line 1): the top level must be a mapping of options")
    assert problem.endswith(f"not {kind}")


def test_missing_config_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as caught:
        load_config(missing)
    assert caught.value.problems == [f"{missing}: configuration file not found"]


def test_config_path_that_is_a_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path)
    (problem,) = caught.value.problems
    assert problem.startswith(f"{tmp_path}: cannot read the configuration file")


def test_load_config_names_lines_from_the_file(tmp_path: Path) -> None:
    path = write(tmp_path / "c.yaml", "accounts:\n  - provider: samsara\n    id: a\n")
    with pytest.raises(ConfigError) as caught:
        load_config(str(path))
    assert caught.value.problems == ["accounts[0].token (line 2): field required"]


# --- ${...} substitution ---------------------------------------------------------------


def account_with(token: str) -> str:
    return f"accounts:\n  - provider: samsara\n    id: demo\n    token: {token}\n"


def token_of(config: BridgeConfig) -> str:
    return config.accounts[0].provider_settings().token


def test_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAMSARA_TOKEN", SECRET)
    assert token_of(parse_config(account_with("${SAMSARA_TOKEN}"))) == SECRET


def test_environment_variable_inside_text(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BROKER", "mqtt.example.org")
    monkeypatch.setenv("BROKER_PORT", "8883")
    config = parse_config(
        "mqtt:\n  host: ${BROKER}\n  port: ${BROKER_PORT}\n  base_topic: site-${BROKER}/x\n"
        + MINIMAL
    )
    assert config.mqtt.host == "mqtt.example.org"
    assert config.mqtt.port == 8883
    assert config.mqtt.base_topic == "site-mqtt.example.org/x"


def test_environment_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SAMSARA_TOKEN", raising=False)
    text = account_with("${SAMSARA_TOKEN:-fallback}")
    assert token_of(parse_config(text)) == "fallback"
    monkeypatch.setenv("SAMSARA_TOKEN", "")
    assert token_of(parse_config(text)) == "fallback"
    monkeypatch.setenv("SAMSARA_TOKEN", "set")
    assert token_of(parse_config(text)) == "set"


def test_missing_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SAMSARA_TOKEN", raising=False)
    # Reported once: not also as an empty token.
    assert problems_of(account_with("${SAMSARA_TOKEN}")) == [
        "accounts[0].token (line 4): environment variable SAMSARA_TOKEN is not set"
    ]


def test_dollar_escape(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("X", "no")
    assert token_of(parse_config(account_with("'a$$b$${X}c$d'"))) == "a$b${X}c$d"


@pytest.mark.parametrize("token", ["'${'", "'${not a name}'", "'${1X}'", "'${file:}'"])
def test_invalid_references(token: str) -> None:
    (problem,) = problems_of(account_with(token))
    assert problem.startswith("accounts[0].token (line 4): ")
    assert "$$" in problem or "file path" in problem


def test_invalid_reference_does_not_echo_its_content() -> None:
    (problem,) = problems_of(account_with(f"'${{{SECRET} x}}'"))
    assert SECRET not in problem


def test_values_from_the_environment_are_not_substituted_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("A", "${B}")
    monkeypatch.delenv("B", raising=False)
    assert token_of(parse_config(account_with("${A}"))) == "${B}"


def test_file_secret_relative_to_the_config_directory(tmp_path: Path) -> None:
    (tmp_path / "secrets").mkdir()
    write(tmp_path / "secrets" / "token", SECRET + "\n")
    config = write(tmp_path / "c.yaml", account_with("${file:secrets/token}"))
    assert token_of(load_config(config)) == SECRET


def test_file_secret_absolute_and_only_one_newline_stripped(tmp_path: Path) -> None:
    secret = write(tmp_path / "password", "pw\n\n")
    write(tmp_path / "token", "abc\r\n")
    text = f"mqtt:\n  password: ${{file:{secret}}}\n" + account_with("${file:token}")
    config = parse_config(text, base_dir=tmp_path)
    assert config.mqtt.password is not None
    assert config.mqtt.password.get_secret_value() == "pw\n"
    assert token_of(config) == "abc"


def test_missing_file_secret_names_the_option_and_the_file(tmp_path: Path) -> None:
    assert problems_of(account_with("${file:nope.txt}"), base_dir=tmp_path) == [
        f"accounts[0].token (line 4): secret file {tmp_path / 'nope.txt'} does not exist"
    ]


def test_unreadable_file_secret_never_shows_its_content(tmp_path: Path) -> None:
    (tmp_path / "dir").mkdir()
    write(tmp_path / "binary", "")
    (tmp_path / "binary").write_bytes(b"\xff\xfe" + SECRET.encode())
    problems = problems_of(
        account_with("${file:dir}") + "    api_version: ${file:binary}\n", base_dir=tmp_path
    )
    assert problems[0].startswith(
        f"accounts[0].token (line 4): cannot read secret file {tmp_path / 'dir'} ("
    )
    assert problems[1] == (
        f"accounts[0].api_version (line 5): secret file {tmp_path / 'binary'} is not UTF-8 text"
    )
    assert all(SECRET not in problem for problem in problems)


def test_empty_token_is_refused() -> None:
    assert problems_of(account_with("''")) == ["accounts[0].token (line 4): must not be empty"]


# --- secrets stay secret ---------------------------------------------------------------


@pytest.mark.parametrize(
    "token",
    [
        f"{{value: {SECRET}}}",
        f"[{SECRET}]",
        "1234567890123",
        "12345678.5",
        f'"{SECRET}\\n"',
        f'"{SECRET}\\t"',
    ],
)
def test_secrets_never_appear_in_errors(token: str) -> None:
    text = f"mqtt:\n  password: [{SECRET}]\n" + account_with(token) + "    region: mars\n"
    with pytest.raises(ConfigError) as caught:
        parse_config(text)
    message = str(caught.value)
    for secret in (SECRET, "1234567890123", "12345678"):
        assert secret not in message
    assert "input_value" not in message
    assert "accounts[0].token (line 6): " in message
    assert "mqtt.password (line 2): " in message


def test_secrets_are_hidden_in_repr_and_str(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MQTT_PASSWORD", "mqtt-" + SECRET)
    config = parse_config("mqtt:\n  password: ${MQTT_PASSWORD}\n" + account_with(SECRET))
    for text in (repr(config), str(config), repr(config.accounts[0]), repr(config.mqtt)):
        assert SECRET not in text
    assert SECRET not in repr(config.model_dump())
    assert config.secrets() == ["mqtt-" + SECRET, SECRET]


def test_secrets_lists_every_account_token() -> None:
    text = MINIMAL + "  - provider: samsara\n    id: other\n    token: def\n"
    assert parse_config(text).secrets() == ["abc", "def"]


def test_validation_errors_from_python_hide_inputs() -> None:
    with pytest.raises(ValidationError) as caught:
        BridgeConfig.model_validate(
            {"accounts": [{"provider": "samsara", "id": "x", "token": {"v": SECRET}}]}
        )
    assert SECRET not in str(caught.value)


# --- paths -----------------------------------------------------------------------------


def test_relative_store_path_resolves_against_the_config_directory(tmp_path: Path) -> None:
    config_dir = tmp_path / "etc"
    config_dir.mkdir()
    path = write(config_dir / "c.yaml", "store:\n  path: data/bridge.sqlite\n" + MINIMAL)
    assert load_config(path).store.path == config_dir / "data" / "bridge.sqlite"


def test_absolute_store_path_is_kept(tmp_path: Path) -> None:
    store = tmp_path / "x.sqlite"
    config = parse_config(f"store:\n  path: {store}\n" + MINIMAL, base_dir=tmp_path / "etc")
    assert config.store.path == store


def test_tls_true_means_system_cas() -> None:
    config = parse_config("mqtt:\n  tls: true\n" + MINIMAL)
    assert config.mqtt.tls == TlsConfig()
    assert parse_config("mqtt:\n  tls: false\n" + MINIMAL).mqtt.tls is None


def test_tls_files_resolve_against_the_config_directory(tmp_path: Path) -> None:
    for name in ("ca.pem", "client.pem", "client.key"):
        write(tmp_path / name, "x")
    text = (
        "mqtt:\n  tls:\n    ca_file: ca.pem\n    cert_file: client.pem\n"
        "    key_file: client.key\n    insecure: true\n" + MINIMAL
    )
    tls = parse_config(text, base_dir=tmp_path).mqtt.tls
    assert tls == TlsConfig(
        ca_file=tmp_path / "ca.pem",
        cert_file=tmp_path / "client.pem",
        key_file=tmp_path / "client.key",
        insecure=True,
    )


def test_missing_tls_file_is_named(tmp_path: Path) -> None:
    text = "mqtt:\n  tls:\n    ca_file: certs/ca.pem\n" + MINIMAL
    assert problems_of(text, base_dir=tmp_path) == [
        f"mqtt.tls.ca_file (line 3): file {tmp_path / 'certs' / 'ca.pem'} does not exist"
    ]


def test_tls_key_needs_a_certificate(tmp_path: Path) -> None:
    write(tmp_path / "client.key", "x")
    text = "mqtt:\n  tls:\n    key_file: client.key\n" + MINIMAL
    assert problems_of(text, base_dir=tmp_path) == [
        "mqtt.tls.key_file (line 3): requires cert_file (the client certificate)"
    ]


def test_account_ids_whose_unique_ids_could_meet_are_warned_about() -> None:
    config = BridgeConfig.model_validate(
        {
            "accounts": [
                {"id": "depot", "provider": "samsara", "token": "tok-aaaa"},
                {"id": "depot_2", "provider": "samsara", "token": "tok-bbbb"},
                {"id": "north", "provider": "samsara", "token": "tok-cccc"},
            ]
        }
    )
    (warning,) = config.warnings()
    assert "accounts 'depot' and 'depot_2'" in warning
    assert "a vehicle '2_x' of 'depot'" in warning
    assert "'depot-2'" in warning
