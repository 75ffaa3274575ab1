"""What hassfest checks of a custom integration, checked on every lane.

Home Assistant's hassfest (`script/hassfest` in its repository, what the
`home-assistant/actions/hassfest` CI action runs with `--integration-path`) is
in neither the homeassistant wheel nor its sdist: the 2026.11.0 sdist on PyPI
holds `homeassistant/` and `tests/` only, and this machine reaches PyPI alone.
So the checks it applies to a custom integration are restated here, written
against its rules as of Home Assistant 2026.11, with Home Assistant's own
validators where it has them (selectors, slugs, HTML in strings):

- manifest: the custom-integration schema, domain = folder, no clash with a core
  integration, an IoT class, a valid version, keys sorted (domain, name, then
  alphabetical);
- translations/en.json: only the sections and keys Home Assistant reads, no
  HTML, URLs, stray spaces, quoted or non-identifier placeholders, placeholders
  in states, and data_description only for fields that exist;
- services.yaml: the schema, selectors Home Assistant accepts, every action
  named and described (in en.json), with an icon, registered by services.py;
- icons.json: the schema, icons for translation keys that exist;
- config_flow: `config_flow: true` and a ConfigFlow for the domain;
- dependencies: every `homeassistant.components.X` we import is a platform of
  ours or a dependency;
- quality_scale.yaml: hassfest's schema (exempt needs a reason) over its rule
  list, every rule addressed, and every rule this lane's Home Assistant grades
  its own integrations on is known to us.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import re
import string
from pathlib import Path
from typing import Any

import pytest
import voluptuous as vol
from homeassistant.const import Platform
from homeassistant.helpers import config_validation as cv
from homeassistant.helpers import selector
from homeassistant.util.yaml import load_yaml
from packaging.requirements import Requirement
from packaging.version import InvalidVersion, Version

from fleet_ha import REPO_ROOT

COMPONENT = REPO_ROOT / "custom_components" / "fleet_telematics"
DOMAIN = "fleet_telematics"

# hassfest's rule list (script/hassfest/quality_scale.py, ALL_RULES), by tier.
QUALITY_RULES = {
    "bronze": [
        "action-setup", "appropriate-polling", "brands", "common-modules", "config-flow",
        "config-flow-test-coverage", "dependency-transparency", "docs-actions",
        "docs-conditions", "docs-high-level-description", "docs-installation-instructions",
        "docs-removal-instructions", "docs-triggers", "entity-event-setup",
        "entity-unique-id", "has-entity-name", "runtime-data", "test-before-configure",
        "test-before-setup", "unique-config-entry",
    ],
    "silver": [
        "action-exceptions", "config-entry-unloading", "docs-configuration-parameters",
        "docs-installation-parameters", "entity-unavailable", "integration-owner",
        "log-when-unavailable", "parallel-updates", "reauthentication-flow", "test-coverage",
    ],
    "gold": [
        "devices", "diagnostics", "discovery", "discovery-update-info", "docs-data-update",
        "docs-examples", "docs-known-limitations", "docs-supported-devices",
        "docs-supported-functions", "docs-troubleshooting", "docs-use-cases",
        "dynamic-devices", "entity-category", "entity-device-class",
        "entity-disabled-by-default", "entity-translations", "exception-translations",
        "icon-translations", "reconfiguration-flow", "repair-issues", "stale-devices",
    ],
    "platinum": ["async-dependency", "inject-websession", "strict-typing"],
}  # fmt: skip
ALL_RULES = [rule for rules in QUALITY_RULES.values() for rule in rules]

# Components an integration may import without depending on them (hassfest's
# ALLOWED_USED_COMPONENTS besides the entity platforms).
ALLOWED_USED = {
    "alert", "automation", "conversation", "default_config", "device_automation",
    "frontend", "group", "hassio", "homeassistant", "input_boolean", "input_button",
    "input_datetime", "input_number", "input_select", "input_text", "media_source",
    "onboarding", "panel_custom", "persistent_notification", "person", "script",
    "shopping_list", "sun", "system_health", "system_log", "timer", "webhook",
    "websocket_api", "zone", "mjpeg", "stream",
}  # fmt: skip

INTEGRATION_TYPES = ["device", "entity", "hardware", "helper", "hub", "service", "system"]
IOT_CLASSES = [
    "assumed_state", "calculated", "cloud_polling", "cloud_push", "local_polling", "local_push",
]  # fmt: skip
TRANSLATION_KEY = re.compile(r"^(?!.+[_-]{2})(?![_-])[a-z0-9-_]+(?<![_-])$")
URL = re.compile(r"((ftp|ftps|scp|https?|mqtts?|socket|socks5)://|www\.)[a-z0-9]+", re.I)
MDI = re.compile(r"^mdi:[a-z0-9-]+$")


def _read_json(name: str) -> Any:
    return json.loads((COMPONENT / name).read_text())


def _url(value: Any) -> str:
    if not isinstance(value, str) or not value.startswith("https://"):
        raise vol.Invalid("must be an https URL")
    return value


def _version(value: Any) -> str:
    try:
        Version(value)
    except (InvalidVersion, TypeError) as err:
        raise vol.Invalid(f"{value!r} is not a valid version") from err
    return str(value)


def _requirement(value: Any) -> str:
    Requirement(value)  # raises on anything pip could not read
    return str(value)


def _codeowner(value: Any) -> str:
    if not isinstance(value, str) or not value.startswith("@"):
        raise vol.Invalid("a code owner is a GitHub @user or @org/team")
    return value


MANIFEST_SCHEMA = vol.Schema(
    {
        vol.Required("domain"): str,
        vol.Required("name"): str,
        vol.Optional("integration_type"): vol.In(INTEGRATION_TYPES),
        vol.Optional("config_flow"): bool,
        vol.Required("documentation"): _url,
        vol.Optional("issue_tracker"): _url,
        vol.Optional("requirements"): [_requirement],
        vol.Optional("dependencies"): [str],
        vol.Optional("after_dependencies"): [str],
        vol.Required("codeowners"): [_codeowner],
        vol.Optional("loggers"): [str],
        vol.Optional("iot_class"): vol.In(IOT_CLASSES),
        vol.Optional("single_config_entry"): bool,
        vol.Optional("import_executor"): bool,
        vol.Required("version"): _version,
    }
)


def manifest_problems(manifest: dict[str, Any], folder: str = COMPONENT.name) -> list[str]:
    problems = []
    try:
        MANIFEST_SCHEMA(manifest)
    except vol.Invalid as err:
        problems.append(f"manifest: {err}")
    domain = manifest.get("domain")
    if domain != folder:
        problems.append(f"manifest: domain {domain!r} is not the folder's name {folder!r}")
    if importlib.util.find_spec(f"homeassistant.components.{domain}") is not None:
        problems.append(f"manifest: domain {domain!r} collides with a core integration")
    if "iot_class" not in manifest:
        problems.append("manifest: no iot_class")
    keys = list(manifest)
    if keys != sorted(keys, key=lambda k: {"domain": ".0", "name": ".1"}.get(k, k)):
        problems.append("manifest: keys are not sorted (domain, name, then alphabetical)")
    for name in [*manifest.get("dependencies", []), *manifest.get("after_dependencies", [])]:
        if importlib.util.find_spec(f"homeassistant.components.{name}") is None:
            problems.append(f"manifest: dependency {name!r} is no Home Assistant integration")
    return problems


def test_the_manifest_passes_hassfest_rules() -> None:
    assert manifest_problems(_read_json("manifest.json"), COMPONENT.name) == []


def test_the_manifest_check_catches_what_hassfest_rejects() -> None:
    good = _read_json("manifest.json")
    assert manifest_problems(good, COMPONENT.name) == []
    assert manifest_problems(good, "fleet")  # folder and domain differ
    assert manifest_problems({**good, "iot_class": "cloud"})
    assert manifest_problems({k: v for k, v in good.items() if k != "version"})
    assert manifest_problems({**good, "version": "zero"})
    assert manifest_problems({**good, "documentation": "http://example.com"})
    assert manifest_problems({**good, "codeowners": ["fleet"]})
    assert manifest_problems({**good, "requirements": ["fleet-telematics-bridge=0.2"]})
    assert manifest_problems({**good, "dependencies": ["no_such_integration"]})
    assert manifest_problems({**good, "mqtt_topics": ["fleet/#"]})  # unknown key
    unsorted = {"name": good["name"], **good}
    assert manifest_problems(unsorted)
    assert manifest_problems({**good, "domain": "mqtt"}, "mqtt")  # a core domain


# -- translations --------------------------------------------------------------------


def _text(value: Any, *, placeholders: bool = True) -> str:
    """One translated string, as hassfest's validate_translation_value has it."""
    text = cv.string_with_no_html(value)
    if re.search(r"'{\w+}'", text):
        raise vol.Invalid("placeholders inside single quotes")
    for _, field, _, _ in string.Formatter().parse(text):
        if field and not placeholders:
            raise vol.Invalid("placeholders are not supported here")
        if field and not field.isidentifier():
            raise vol.Invalid(f"placeholder {{{field}}} is not an identifier")
    if text != text.strip():
        raise vol.Invalid("leading or trailing spaces")
    if URL.search(text):
        raise vol.Invalid("a URL: use a description placeholder")
    if re.search(r"(.+\[%)|(%\].+)", text):
        raise vol.Invalid("a combined translation reference")
    return text


def _key(value: Any) -> str:
    if not isinstance(value, str) or TRANSLATION_KEY.match(value) is None:
        raise vol.Invalid(f"invalid translation key {value!r}")
    return value


def _keyed(schema: Any, key: Any = _key) -> vol.Schema:
    return vol.Schema({key: schema})


def _state(value: Any) -> str:
    return _text(value, placeholders=False)


def _described_fields_exist(flow: dict[str, Any]) -> dict[str, Any]:
    for step_id, step in flow.get("step", {}).items():
        parts = [step, *step.get("sections", {}).values()]
        for part in parts:
            for key in part.get("data_description", {}):
                if key not in part.get("data", {}):
                    raise vol.Invalid(f"step {step_id}: data_description {key} is not in data")
    return flow


def _flow_schema() -> vol.All:
    field_texts = {
        vol.Optional("data"): {str: _text},
        vol.Optional("data_description"): {str: _text},
    }
    step = {
        vol.Optional("title"): _text,
        vol.Optional("description"): _text,
        **field_texts,
        vol.Optional("menu_options"): {str: _text},
        vol.Optional("menu_option_descriptions"): {str: _text},
        vol.Optional("submit"): _text,
        vol.Optional("sections"): {
            str: {**field_texts, vol.Optional("name"): _text, vol.Optional("description"): _text}
        },
    }
    flow = {
        vol.Optional("flow_title"): _text,
        vol.Required("step"): {str: step},
        vol.Optional("error"): {str: _text},
        vol.Optional("abort"): {str: _text},
        vol.Optional("progress"): {str: _text},
        vol.Optional("create_entry"): {str: _text},
        vol.Optional("initiate_flow"): {vol.Required("user"): _text},
    }
    return vol.All(vol.Schema(flow), _described_fields_exist)


def _service_texts() -> dict[Any, Any]:
    return {
        vol.Required("name"): _text,
        vol.Required("description"): _text,
        vol.Optional("fields"): _keyed(
            {
                vol.Required("name"): str,
                vol.Required("description"): _text,
                vol.Optional("example"): _text,
            }
        ),
        vol.Optional("sections"): _keyed(
            {vol.Required("name"): str, vol.Optional("description"): _text}
        ),
    }


STRINGS_SCHEMA = vol.Schema(
    {
        vol.Optional("title"): _text,
        vol.Optional("config"): _flow_schema(),
        vol.Optional("options"): _flow_schema(),
        vol.Optional("selector"): _keyed(
            {
                vol.Optional("options"): _keyed(_text),
                vol.Optional("choices"): _keyed(_text),
                vol.Optional("unit_of_measurement"): _keyed(_text),
            },
            cv.slug,
        ),
        vol.Optional("issues"): {
            str: vol.All(
                cv.has_at_least_one_key("description", "fix_flow"),
                vol.Schema(
                    {
                        vol.Required("title"): _text,
                        vol.Exclusive("description", "fixable"): _text,
                        vol.Exclusive("fix_flow", "fixable"): dict,
                    }
                ),
            )
        },
        vol.Optional("device"): _keyed({vol.Optional("name"): _text}),
        vol.Optional("entity"): _keyed(
            _keyed(
                {
                    vol.Optional("name"): _text,
                    vol.Optional("state"): _keyed(_state),
                    vol.Optional("state_attributes"): _keyed(
                        {vol.Optional("name"): _state, vol.Optional("state"): _keyed(_state)}
                    ),
                    vol.Optional("unit_of_measurement"): _state,
                }
            ),
            cv.slug,
        ),
        vol.Optional("exceptions"): _keyed({vol.Optional("message"): _text}, cv.slug),
        vol.Optional("services"): _keyed(_service_texts()),
    }
)


def strings_problems(strings: Any) -> list[str]:
    try:
        STRINGS_SCHEMA(strings)
    except vol.Invalid as err:
        return [f"translations/en.json: {err}"]
    return []


def test_the_translations_pass_hassfest_rules() -> None:
    assert strings_problems(_read_json("translations/en.json")) == []


def test_the_translation_check_catches_what_hassfest_rejects() -> None:
    good = _read_json("translations/en.json")
    assert strings_problems(good) == []

    def changed(path: str, value: Any) -> dict[str, Any]:
        strings = json.loads(json.dumps(good))
        *parents, last = path.split("/")
        node = strings
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
        return strings

    assert strings_problems(changed("config/step/user/title", "Add <b>it</b>"))
    assert strings_problems(changed("config/step/user/title", "Add it "))
    assert strings_problems(changed("config/step/user/title", "See https://example.com"))
    assert strings_problems(changed("config/step/user/title", "Connect '{provider}'"))
    assert strings_problems(changed("config/step/user/title", "Connect {provider-name}"))
    assert strings_problems(changed("config/step/user/data_description/nothing", "No field"))
    assert strings_problems(changed("entity/sensor/status/state/driving", "{speed} km/h"))
    assert strings_problems(changed("entity/sensor/Status", {"name": "Status"}))
    assert strings_problems(changed("services/refresh/name", None))
    assert strings_problems(changed("config/step/user/heading", "Not a key Home Assistant reads"))
    assert strings_problems(changed("entities", {}))


# -- services ------------------------------------------------------------------------


def _selector(value: Any) -> Any:
    return selector.validate_selector(value)


def _unique_fields(fields: dict[str, Any]) -> dict[str, Any]:
    seen: set[str] = set()
    for key, value in fields.items():
        names = list(value["fields"]) if value and "fields" in value else [key]
        for name in names:
            if name in seen:
                raise vol.Invalid(f"field {name} is used twice")
            seen.add(name)
    return fields


FIELD = {
    vol.Optional("example"): object,
    vol.Optional("default"): object,
    vol.Optional("required"): bool,
    vol.Optional("advanced"): bool,
    vol.Optional("selector"): _selector,
    vol.Optional("name"): str,
    vol.Optional("description"): str,
    vol.Optional("filter"): dict,
}
SECTION = {
    vol.Required("fields"): {str: FIELD},
    vol.Optional("collapsed"): bool,
    vol.Optional("name"): str,
    vol.Optional("description"): str,
}
SERVICES_SCHEMA = vol.Schema(
    {
        cv.slug: vol.Any(
            None,
            vol.Schema(
                {
                    vol.Optional("target"): vol.Any(dict, None),
                    vol.Optional("fields"): vol.All(
                        vol.Schema({str: vol.Any(vol.Schema(FIELD), vol.Schema(SECTION))}),
                        _unique_fields,
                    ),
                    vol.Optional("name"): str,
                    vol.Optional("description"): str,
                }
            ),
        )
    }
)


def services_problems(services: Any, strings: dict[str, Any], icons: dict[str, Any]) -> list[str]:
    try:
        SERVICES_SCHEMA(services)
    except vol.Invalid as err:
        return [f"services.yaml: {err}"]
    problems = []
    texts = strings.get("services", {})
    for name, service in services.items():
        if name not in icons.get("services", {}):
            problems.append(f"action {name} has no icon in icons.json")
        if not {"name", "description"} <= set(texts.get(name, {})):
            problems.append(f"action {name} has no name or description in en.json")
        for field_name, field in (service or {}).get("fields", {}).items():
            field_texts = texts.get(name, {}).get("fields", {}).get(field_name, {})
            if not {"name", "description"} <= set(field_texts):
                problems.append(f"action {name}: field {field_name} is not named or described")
            key = (field.get("selector") or {}).get("select", {}).get("translation_key")
            if key is not None and key not in strings.get("selector", {}):
                problems.append(f"action {name}: selector key {key} is not in en.json")
    for name in texts:
        if name not in services:
            problems.append(f"en.json describes action {name}, which services.yaml lacks")
    return problems


def registered_services() -> set[str]:
    """The actions services.py registers (the SERVICE_* constants it passes)."""
    from custom_components.fleet_telematics import const

    tree = ast.parse((COMPONENT / "services.py").read_text())
    names = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    return {getattr(const, name) for name in names if name.startswith("SERVICE_")}


def test_services_pass_hassfest_rules_and_match_what_is_registered() -> None:
    services = load_yaml(str(COMPONENT / "services.yaml"))
    strings = _read_json("translations/en.json")
    icons = _read_json("icons.json")

    assert services_problems(services, strings, icons) == []
    assert set(services) == registered_services()


def test_the_services_check_catches_what_hassfest_rejects() -> None:
    services = load_yaml(str(COMPONENT / "services.yaml"))
    strings = _read_json("translations/en.json")
    icons = _read_json("icons.json")
    assert services_problems(services, strings, icons) == []

    def with_field(field: dict[str, Any]) -> dict[str, Any]:
        return {**services, "refresh": {"fields": {"config_entry_id": field}}}

    assert services_problems(with_field({"selector": {"no_such_selector": {}}}), strings, icons)
    assert services_problems(with_field({"required": "yes"}), strings, icons)
    assert services_problems(with_field({"default_value": 1}), strings, icons)
    assert services_problems({**services, "Refresh": None}, strings, icons)
    no_icon = {**icons, "services": {k: v for k, v in icons["services"].items() if k != "refresh"}}
    assert services_problems(services, strings, no_icon)
    unnamed = {
        **strings,
        "services": {k: v for k, v in strings["services"].items() if k != "refresh"},
    }
    assert services_problems(services, unnamed, icons)
    select = {"selector": {"select": {"translation_key": "nothing", "options": ["a"]}}}
    assert services_problems(with_field(select), strings, icons)


# -- icons ---------------------------------------------------------------------------


def _icon(value: Any) -> str:
    if not isinstance(value, str) or MDI.match(value) is None:
        raise vol.Invalid(f"{value!r} is not an mdi: icon")
    return value


ICONS_SCHEMA = vol.Schema(
    {
        vol.Optional("entity"): _keyed(
            _keyed(
                {
                    vol.Optional("default"): _icon,
                    vol.Optional("state"): _keyed(_icon),
                    vol.Optional("range"): {vol.Coerce(float): _icon},
                    vol.Optional("state_attributes"): _keyed(
                        {vol.Optional("default"): _icon, vol.Optional("state"): _keyed(_icon)}
                    ),
                }
            ),
            cv.slug,
        ),
        vol.Optional("services"): _keyed(
            vol.Any(
                _icon,
                {vol.Optional("service"): _icon, vol.Optional("sections"): _keyed(_icon)},
            )
        ),
    }
)


def test_icons_pass_hassfest_rules_and_name_entities_that_exist() -> None:
    icons = _read_json("icons.json")
    strings = _read_json("translations/en.json")

    ICONS_SCHEMA(icons)
    for platform, keys in icons.get("entity", {}).items():
        for key in keys:
            assert key in strings["entity"].get(platform, {}), f"icon for unknown {platform}.{key}"
    with pytest.raises(vol.Invalid):
        ICONS_SCHEMA({**icons, "services": {"refresh": "refresh"}})


# -- config flow, dependencies ---------------------------------------------------------


def test_the_config_flow_is_declared_and_exists() -> None:
    from homeassistant.config_entries import HANDLERS, ConfigFlow

    import custom_components.fleet_telematics.config_flow  # noqa: F401  (registers it)

    assert _read_json("manifest.json")["config_flow"] is True
    assert issubclass(HANDLERS[DOMAIN], ConfigFlow)


def referenced_components(source: str) -> set[str]:
    """The Home Assistant integrations a module imports."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        for name in names:
            parts = name.split(".")
            if parts[:2] == ["homeassistant", "components"] and len(parts) > 2:
                found.add(parts[2])
    return found


def dependency_problems(component: Path, manifest: dict[str, Any]) -> list[str]:
    allowed = (
        ALLOWED_USED
        | {platform.value for platform in Platform}
        | set(manifest.get("dependencies", []))
        | set(manifest.get("after_dependencies", []))
    )
    problems = []
    for path in sorted(component.rglob("*.py")):
        for domain in sorted(referenced_components(path.read_text())):
            # A platform of ours for that integration (diagnostics.py) may import it.
            own_platform = (component / f"{domain}.py").exists() or (component / domain).is_dir()
            if domain not in allowed and not own_platform and domain != manifest["domain"]:
                problems.append(f"{path.name} uses {domain} but the manifest does not depend on it")
    return problems


def test_every_integration_we_use_is_a_dependency_or_one_of_our_platforms(tmp_path: Path) -> None:
    manifest = _read_json("manifest.json")
    assert dependency_problems(COMPONENT, manifest) == []

    (tmp_path / "sensor.py").write_text("from homeassistant.components.mqtt import client\n")
    assert dependency_problems(tmp_path, manifest) == [
        "sensor.py uses mqtt but the manifest does not depend on it"
    ]


# -- quality scale -------------------------------------------------------------------

_DONE_OR_TODO = vol.In(["todo", "done"])
QUALITY_SCALE_SCHEMA = vol.Schema(
    {
        vol.Required("rules"): vol.Schema(
            {
                vol.Optional(rule): vol.Any(
                    _DONE_OR_TODO,
                    vol.Schema(
                        {vol.Required("status"): _DONE_OR_TODO, vol.Required("comment"): str}
                    ),
                    vol.Schema({vol.Required("status"): "exempt", vol.Required("comment"): str}),
                )
                for rule in ALL_RULES
            }
        )
    }
)


def quality_scale_problems(data: Any) -> list[str]:
    try:
        QUALITY_SCALE_SCHEMA(data)
    except vol.Invalid as err:
        return [f"quality_scale.yaml: {err}"]
    missing = [rule for rule in ALL_RULES if rule not in data["rules"]]
    return [f"quality_scale.yaml: rule {rule} is not addressed" for rule in missing]


def test_the_quality_scale_addresses_every_rule_as_hassfest_reads_them() -> None:
    data = load_yaml(str(COMPONENT / "quality_scale.yaml"))
    assert quality_scale_problems(data) == []

    rules = data["rules"]
    assert quality_scale_problems({"rules": {**rules, "docs-triggers": "exempt"}})  # no reason
    assert quality_scale_problems({"rules": {**rules, "docs-triggers": "skipped"}})
    assert quality_scale_problems({"rules": {**rules, "no-such-rule": "done"}})
    assert quality_scale_problems({"rules": {k: v for k, v in rules.items() if k != "brands"}})


def test_every_rule_home_assistant_grades_its_own_integrations_on_is_known() -> None:
    """The rule list above against this lane's Home Assistant: its integrations
    carry quality_scale.yaml files (since late 2024; none on 2024.3)."""
    import homeassistant.components as components

    graded: set[str] = set()
    for path in Path(components.__file__).parent.glob("*/quality_scale.yaml"):
        graded |= set((load_yaml(str(path)) or {}).get("rules", {}))
    assert graded - set(ALL_RULES) == set()
